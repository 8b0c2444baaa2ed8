"""The arithmetic peak per precision (edgeseg.measure.peak): which loops run, the record.

No figure is asserted: the values depend on the CPU and what else it runs; benchmarks
report them. The tests check which kernels a CPU's flags select, that the loops build and
run here, and the record's shape.
"""

from __future__ import annotations

import json

import pytest

from edgeseg.cli import main
from edgeseg.cpu import cpu_flags
from edgeseg.measure import peak as peak_mod
from edgeseg.measure.peak import KERNELS, PRECISIONS, Peak, chosen_kernels, measure_peak


def test_flags_choose_the_widest_kernel_of_each_precision() -> None:
    assert chosen_kernels({"avx2", "fma"}) == {"fp32": "fp32_avx2", "int8": "int8_avx2"}
    vnni = {"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"}
    assert chosen_kernels(vnni) == {
        "fp32": "fp32_avx512",
        "int8": "int8_avx512vnni",
        "bf16": "bf16_avx512",
    }
    assert chosen_kernels({"asimd"}) == {}  # no x86 loop on Arm: the GEMM figure only


def test_loops_build_and_run_on_this_cpu() -> None:
    res = measure_peak(1, seconds=0.01, rounds=1, gemm=False)
    expected = chosen_kernels(cpu_flags())
    if not expected:
        pytest.skip("no x86 SIMD loop for this CPU")
    assert set(res.gops) == set(expected) and set(res.gops) <= set(PRECISIONS)
    assert res.instruction == {p: KERNELS[k].instruction for p, k in expected.items()}
    assert res.threads == 1 and res.cpu
    back = Peak.from_dict(json.loads(json.dumps(res.to_dict())))
    assert back == res
    table = res.table()
    assert all(f"| {p} |" in table for p in PRECISIONS)


def test_without_a_compiler_the_record_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peak_mod.shutil, "which", lambda _name: None)
    res = measure_peak(1, seconds=0.01, rounds=1, gemm=False)
    if chosen_kernels(cpu_flags()):
        assert res.gops == {} and "no C compiler" in res.note


def test_peak_of_prefers_the_higher_of_loop_and_library() -> None:
    p = Peak("cpu", [], 2, gops={"fp32": 100.0}, gemm={"fp32": 90.0, "bf16": 300.0})
    assert p.of("fp32") == 100.0 and p.of("bf16") == 300.0 and p.of("int8") is None


def test_cli_peak_json(tmp_path, capsys) -> None:
    out = tmp_path / "peak.json"
    assert main(["peak", "--threads", "1", "--json", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec["threads"] == 1 and set(rec["gemm"]) <= set(PRECISIONS)
