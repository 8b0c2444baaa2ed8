"""The run log survives a torn or foreign ``log.jsonl`` on resume."""

from __future__ import annotations

import json
from pathlib import Path

from edgeseg.engine.run_log import RunLog


def test_resume_keeps_the_rows_that_parse_and_drops_garbage(tmp_path: Path) -> None:
    rows = [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}, {"epoch": 3, "loss": 0.4}]
    text = "\n".join(json.dumps(r) for r in rows).encode()
    (tmp_path / "log.jsonl").write_bytes(
        b"\xa2\xff\x00binary\n" + text + b"\n[1, 2]\n" + b"[" * 100_000 + b'\n{"epoch": "x"}\n'
    )
    log = RunLog(tmp_path, enabled=True, tensorboard=False, keep_epochs=2)
    assert [r.get("epoch") for r in log.rows] == [1, 2, "x"]
    kept = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in kept] == [1, 2, "x"]
