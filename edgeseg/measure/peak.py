"""The CPU's arithmetic peak per precision, measured on the machine at hand.

A backend's latency says little until it is set against what the silicon can do: a
network that attains 100 GFLOP/s is near the limit of a 2-core AVX2 laptop and at a
quarter of a 2-core AVX-512 server. :func:`measure_peak` times, on every thread of
``threads``, a loop of independent multiply-accumulate instructions of each precision the
CPU has (no loads, no stores: the execution units' own limit, the "roof" of a roofline):

===========  =============================================  ============================
precision    instruction (widest the CPU has)               operations per instruction
===========  =============================================  ============================
``fp32``     ``vfmadd231ps`` zmm (AVX-512F) or ymm (AVX2)   32 or 16 (mul + add a lane)
``bf16``     ``vdpbf16ps`` zmm (AVX512_BF16)                64 (2 products a lane + add)
``int8``     ``vpdpbusd`` zmm (AVX512_VNNI) or ymm          128 or 64 (4 products a lane)
             (AVX-VNNI); without VNNI the AVX2 sequence
             ``vpmaddubsw`` + ``vpmaddwd`` + ``vpaddd``      64 per three instructions
===========  =============================================  ============================

The loops are C, compiled here with the system's C compiler (``cc``; no compiler: no
instruction peak, said in one line) and called through :mod:`ctypes`, which releases the
GIL, so ``threads`` Python threads run them on as many cores. Each figure is the best of
several rounds: a busy machine lowers it, nothing raises it, so it is a lower bound of
the true peak. AMX tiles are not looped (they need the kernel's permission and tile
set-up); on an AMX CPU the library GEMM figure (:func:`gemm_peak`, oneDNN through PyTorch)
is the one that reaches them.

Run it as ``edgeseg peak`` or ``python -m edgeseg.measure.peak``.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.cpu import cpu_flags, cpu_name
from edgeseg.errors import EdgesegError

__all__ = [
    "KERNELS",
    "PRECISIONS",
    "Peak",
    "chosen_kernels",
    "gemm_peak",
    "measure_peak",
]

log = logging.getLogger(__name__)

#: The precisions a backend computes in, in the order tables print them.
PRECISIONS = ("fp32", "bf16", "int8")

# Twelve independent accumulators: enough to cover a 4-6 cycle latency on two ports, few
# enough to stay in registers (16 ymm under AVX2, 32 zmm under AVX-512).
_C_SOURCE = r"""
#include <immintrin.h>
/* Twelve accumulators a0..a11, each its own variable so it lives in a register. */
#define R12(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11)
/* An empty asm that "changes" an accumulator: the compiler can neither fold the chain
   of multiply-adds into fewer instructions nor move the accumulator to memory. */
#define KEEP(k) __asm__ volatile("" : "+v"(a##k));
#define KERNEL(NAME, TARGET, SETUP, INIT, STEP, FOLD)                       \
    __attribute__((target(TARGET))) float NAME(long iters) {                \
        SETUP R12(INIT)                                                     \
        for (long i = 0; i < iters; ++i) { R12(STEP) }                      \
        float s = 0.0f; R12(FOLD) return s;                                 \
    }

#define PS512(k) __m512 a##k = _mm512_set1_ps((float)k);
#define PS256(k) __m256 a##k = _mm256_set1_ps((float)k);
#define EPI512(k) __m512i a##k = _mm512_set1_epi32(k);
#define EPI256(k) __m256i a##k = _mm256_set1_epi32(k);
#define SUM512(k) s += _mm512_reduce_add_ps(a##k);
#define SUM256(k) s += _mm256_cvtss_f32(a##k);
#define SUMI512(k) s += (float)_mm512_reduce_add_epi32(a##k);
#define SUMI256(k) s += (float)_mm256_extract_epi32(a##k, 0);

#define FMA512(k) a##k = _mm512_fmadd_ps(a##k, x, y); KEEP(k)
KERNEL(fp32_avx512, "avx512f",
       __m512 x = _mm512_set1_ps(1.0000001f); __m512 y = _mm512_set1_ps(0.999999f);,
       PS512, FMA512, SUM512)

#define FMA256(k) a##k = _mm256_fmadd_ps(a##k, x, y); KEEP(k)
KERNEL(fp32_avx2, "avx2,fma",
       __m256 x = _mm256_set1_ps(1.0000001f); __m256 y = _mm256_set1_ps(0.999999f);,
       PS256, FMA256, SUM256)

/* 0x3f80 is bf16 1.0 */
#define DPBF16(k) a##k = _mm512_dpbf16_ps(a##k, x, x); KEEP(k)
KERNEL(bf16_avx512, "avx512f,avx512bf16",
       __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80);,
       PS512, DPBF16, SUM512)

#define VNNI512(k) a##k = _mm512_dpbusd_epi32(a##k, x, y); KEEP(k)
KERNEL(int8_avx512vnni, "avx512f,avx512vnni",
       __m512i x = _mm512_set1_epi8(1); __m512i y = _mm512_set1_epi8(-1);,
       EPI512, VNNI512, SUMI512)

#define VNNI256(k) a##k = _mm256_dpbusd_avx_epi32(a##k, x, y); KEEP(k)
KERNEL(int8_avxvnni, "avx2,avxvnni",
       __m256i x = _mm256_set1_epi8(1); __m256i y = _mm256_set1_epi8(-1);,
       EPI256, VNNI256, SUMI256)

/* u8 x s8 pairs summed to s16, then s16 pairs to s32, then accumulated: AVX2's int8 MAC */
#define MADD256(k) \
    a##k = _mm256_add_epi32(a##k, _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), one)); KEEP(k)
KERNEL(int8_avx2, "avx2",
       __m256i x = _mm256_set1_epi8(1); __m256i y = _mm256_set1_epi8(-1);
       __m256i one = _mm256_set1_epi16(1);,
       EPI256, MADD256, SUMI256)
"""


@dataclass(frozen=True)
class Kernel:
    """One instruction loop: what it needs and what one iteration computes."""

    precision: str  # fp32 | bf16 | int8
    flags: frozenset[str]  # /proc/cpuinfo flags the CPU must have
    instruction: str  # what the loop issues, for the table
    ops: int  # arithmetic operations per accumulator per iteration (a MAC counts 2)


#: Widest first: the first kernel of a precision whose flags the CPU has is the peak.
KERNELS: dict[str, Kernel] = {
    "fp32_avx512": Kernel("fp32", frozenset({"avx512f"}), "vfmadd231ps zmm", 32),
    "fp32_avx2": Kernel("fp32", frozenset({"avx2", "fma"}), "vfmadd231ps ymm", 16),
    "bf16_avx512": Kernel("bf16", frozenset({"avx512f", "avx512_bf16"}), "vdpbf16ps zmm", 64),
    "int8_avx512vnni": Kernel("int8", frozenset({"avx512f", "avx512_vnni"}), "vpdpbusd zmm", 128),
    "int8_avxvnni": Kernel("int8", frozenset({"avx2", "avx_vnni"}), "vpdpbusd ymm", 64),
    "int8_avx2": Kernel("int8", frozenset({"avx2"}), "vpmaddubsw+vpmaddwd+vpaddd ymm", 64),
}
_ACCUMULATORS = 12


@dataclass
class Peak:
    """The measured peak of each precision on this CPU (``to_dict`` for JSON)."""

    cpu: str  # model name and SIMD level
    flags: list[str]  # the ISA flags that decide the kernels (AVX2, AVX-512 ..., AMX)
    threads: int  # threads the loops ran on (one per core)
    gops: dict[str, float] = field(default_factory=dict)  # precision -> G(FL)OP/s
    instruction: dict[str, str] = field(default_factory=dict)  # precision -> loop's instr.
    gemm: dict[str, float] = field(default_factory=dict)  # precision -> library GEMM G/s
    note: str = ""  # why a precision has no instruction figure (no compiler, no ISA)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Peak:
        """The inverse of :meth:`to_dict` (unknown keys ignored, for older files)."""
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    def of(self, precision: str) -> float | None:
        """The peak a backend of ``precision`` is set against: the instruction loop's,
        or the library GEMM's where no loop ran (or where the GEMM went faster, AMX)."""
        best = max(self.gops.get(precision, 0.0), self.gemm.get(precision, 0.0))
        return best or None

    def table(self) -> str:
        """A Markdown table: precision, instruction, peak, library GEMM."""
        rows = [
            f"Peak of {self.cpu} on {self.threads} thread(s); ISA: {' '.join(self.flags)}",
            "",
            "| precision | instruction loop | peak G(FL)OP/s | library GEMM G(FL)OP/s |",
            "|---|---|---:|---:|",
        ]
        for p in PRECISIONS:
            peak, gemm = self.gops.get(p), self.gemm.get(p)
            rows.append(
                f"| {p} | {self.instruction.get(p, 'none on this CPU')} | "
                f"{f'{peak:.0f}' if peak else '-'} | {f'{gemm:.0f}' if gemm else '-'} |"
            )
        return "\n".join(rows + ([f"\n{self.note}"] if self.note else []))


#: Flags printed with every peak: the ones that change which kernels a backend can use.
ISA_FLAGS = (
    "avx2", "fma", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "bf16", "i8mm",
)  # fmt: skip


def _compile(work: Path) -> ctypes.CDLL:
    """The kernels as a shared library built with the system's C compiler.

    Raises:
        EdgesegError: no C compiler, or one too old for these intrinsics.
    """
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise EdgesegError("no C compiler (cc, gcc or clang) to build the peak loops")
    tag = hashlib.sha256(_C_SOURCE.encode()).hexdigest()[:12]
    src, lib = work / f"peak_{tag}.c", work / f"peak_{tag}.so"
    src.write_text(_C_SOURCE, encoding="utf-8")
    cmd = [cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["?"])[0][:160]
        raise EdgesegError(f"{cc} cannot build the peak loops: {first}")
    dll = ctypes.CDLL(str(lib))
    for name in KERNELS:
        fn = getattr(dll, name)
        fn.argtypes, fn.restype = [ctypes.c_long], ctypes.c_float
    return dll


def _rate(fn: Any, kernel: Kernel, threads: int, seconds: float, rounds: int) -> float:
    """Best G(FL)OP/s of ``rounds`` runs of ``fn`` on ``threads`` threads at once."""
    iters = 10_000
    while True:  # size one run to about ``seconds``
        t = time.perf_counter()
        fn(iters)
        dt = time.perf_counter() - t
        if dt > seconds / 4 or iters > 1 << 34:
            iters = max(1, int(iters * seconds / max(dt, 1e-9)))
            break
        iters *= 4
    best = 0.0
    for _ in range(rounds):
        pool = [threading.Thread(target=fn, args=(iters,)) for _ in range(threads)]
        t = time.perf_counter()
        for th in pool:
            th.start()
        for th in pool:
            th.join()
        dt = time.perf_counter() - t
        best = max(best, threads * iters * _ACCUMULATORS * kernel.ops / dt / 1e9)
    return best


def gemm_peak(
    threads: int, n: int = 2048, rounds: int = 3, precisions: tuple[str, ...] = PRECISIONS
) -> dict[str, float]:
    """G(FL)OP/s of an ``n``-cube matrix product per precision through PyTorch's CPU
    library (oneDNN/MKL: AVX-512, VNNI or AMX as the CPU has them): what a well-tiled
    kernel attains with loads and stores, the practical ceiling of a dense layer."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    out: dict[str, float] = {}
    try:
        for p in precisions:
            if p == "int8":
                a = torch.randint(-64, 64, (n, n), dtype=torch.int8)
                b = torch.randint(-64, 64, (n, n), dtype=torch.int8)

                def run(a: Any = a, b: Any = b) -> Any:
                    return torch._int_mm(a, b)  # int8 x int8 -> int32 (oneDNN)
            else:
                dtype = torch.float32 if p == "fp32" else torch.bfloat16
                a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)

                def run(a: Any = a, b: Any = b) -> Any:
                    return a @ b

            try:
                run()
            except RuntimeError as e:  # an op this build has no CPU kernel for
                log.info("gemm %s: %s", p, str(e).splitlines()[0])
                continue
            best = min(_timed(run) for _ in range(rounds))
            out[p] = 2 * n**3 / best / 1e9
    finally:
        torch.set_num_threads(old)
    return out


def _timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def chosen_kernels(flags: set[str]) -> dict[str, str]:
    """``{precision: kernel name}``: the widest loop of each precision ``flags`` allow."""
    chosen: dict[str, str] = {}
    for name, k in KERNELS.items():
        if k.precision not in chosen and k.flags <= flags:
            chosen[k.precision] = name
    return chosen


def measure_peak(
    threads: int,
    seconds: float = 0.25,
    rounds: int = 5,
    gemm: bool = True,
    precisions: tuple[str, ...] = PRECISIONS,
) -> Peak:
    """The peak of each precision this CPU has, on ``threads`` threads.

    Args:
        threads: threads to run at once (one per core you deploy on).
        seconds: length of one timed run of a loop.
        rounds: runs per loop; the best is kept (load only ever lowers it).
        gemm: also time the library matrix product of each precision.
        precisions: the precisions to measure (default: all the CPU has).

    Returns:
        A :class:`Peak`; a precision the CPU cannot compute natively is absent.
    """
    flags = cpu_flags()
    peak = Peak(cpu_name(), [f for f in ISA_FLAGS if f in flags], threads)
    chosen = {p: k for p, k in chosen_kernels(flags).items() if p in precisions}
    if chosen:
        try:
            with tempfile.TemporaryDirectory(prefix="edgeseg-peak-") as tmp:
                dll = _compile(Path(tmp))
                for p, name in chosen.items():
                    k = KERNELS[name]
                    peak.gops[p] = _rate(getattr(dll, name), k, threads, seconds, rounds)
                    peak.instruction[p] = k.instruction
        except EdgesegError as e:
            peak.note = f"no instruction peak: {e}"
    missing = [p for p in precisions if p not in chosen]
    if missing and not peak.note:
        peak.note = f"no native {' or '.join(missing)} instruction on this CPU"
    if gemm:
        peak.gemm = gemm_peak(threads, precisions=precisions)
    return peak


def main(argv: list[str] | None = None) -> int:
    """``python -m edgeseg.measure.peak [THREADS]``: print the table."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    threads = int(args[0]) if args else 2
    print(measure_peak(threads).table())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
