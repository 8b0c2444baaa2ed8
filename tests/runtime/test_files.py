"""edgeseg_runtime.files: outputs are not replaced without asking; opacities are checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from edgeseg_runtime.errors import EdgesegError
from edgeseg_runtime.files import check_alpha, check_predictions_free, check_replace


def test_an_existing_file_is_replaced_only_with_overwrite(tmp_path: Path) -> None:
    f = tmp_path / "rows.jsonl"
    check_replace(f, "--json", overwrite=False)  # a new file: fine
    f.write_text("the user's")
    with pytest.raises(EdgesegError, match=r"--json .*rows.jsonl: exists; add --overwrite"):
        check_replace(f, "--json", overwrite=False)
    check_replace(f, "--json", overwrite=True)


def test_earlier_predictions_are_replaced_only_with_overwrite(tmp_path: Path) -> None:
    images = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    out = tmp_path / "preds"
    check_predictions_free(out, images, overwrite=False)  # no folder yet
    (out / "labels").mkdir(parents=True)
    (out / "labels" / "b.png").write_bytes(b"earlier")
    (out / "labels" / "c.png").write_bytes(b"another image's: not in the way")
    with pytest.raises(EdgesegError, match=r"already holds 1 prediction file.*b.png"):
        check_predictions_free(out, images, overwrite=False)
    check_predictions_free(out, images, overwrite=True)


@pytest.mark.parametrize("alpha", [float("nan"), -0.1, 1.5, float("inf")])
def test_an_opacity_outside_0_1_is_refused(alpha: float) -> None:
    with pytest.raises(EdgesegError, match="--alpha"):
        check_alpha(alpha)
    assert check_alpha(0) == 0.0 and check_alpha(1) == 1.0
