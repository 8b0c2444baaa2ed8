"""What this CPU can do for conv kernels: its name and widest SIMD level (below every layer:
training names the CPU in its plan, bench and profile in their records).

int8 speed-ups depend on the SIMD level (VNNI or not), and a VM often reports a bare
"AMD EPYC", so benchmark records name both; the int8 exporter picks 7-bit weights by it.
"""

from __future__ import annotations

import contextlib
import logging
import platform

log = logging.getLogger(__name__)


def cpu_isa(flags: set[str] | None = None) -> str:
    """The widest SIMD level of this CPU that matters for conv kernels, e.g. ``"AVX2"``.

    Args:
        flags: CPU feature flags; read from ``/proc/cpuinfo`` when omitted.

    Returns:
        A label from :data:`_ISA_LEVELS`, or ``""`` when nothing is known.
    """
    flags = cpu_flags() if flags is None else flags
    return next((label for need, label in _ISA_LEVELS if need <= flags), "")


def cpu_flags() -> set[str]:
    """This CPU's feature flags as ``/proc/cpuinfo`` lists them (empty where it cannot be
    read): ``avx2``, ``avx512_vnni``, ``amx_int8`` ... on x86, ``asimddp`` ... on Arm."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    return set()


def cpu_name() -> str:
    """The CPU's model name and SIMD level, e.g. ``"AMD EPYC [AVX2]"``.

    The model name comes from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere). The
    SIMD level is added because virtual machines often report a bare family name
    ("AMD EPYC") for CPUs whose int8 speed differs by 2x.
    """
    name = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    name = name or platform.processor() or platform.machine()
    isa = cpu_isa()
    return f"{name} [{isa}]" if isa else name


#: (cpuinfo flags, label) from the widest: what int8 and fp32 kernels can use. VNNI does an
#: int8 multiply-accumulate in one instruction; without it (plain AVX2) int8 convolutions
#: gain far less over fp32, so int8 speed-ups measured on one CPU do not carry to another.
_ISA_LEVELS: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"amx_int8"}), "AMX-INT8"),
    (frozenset({"avx512f", "avx512_vnni"}), "AVX-512 VNNI"),
    (frozenset({"avx512f"}), "AVX-512"),
    (frozenset({"avx2", "avx_vnni"}), "AVX2 + AVX-VNNI"),
    (frozenset({"avx2"}), "AVX2"),
    (frozenset({"asimddp"}), "NEON dot-product"),
    (frozenset({"asimd"}), "NEON"),
)
