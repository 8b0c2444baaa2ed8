"""The runtime's ONNX metadata reader: the protobuf's top level, no session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from edgeseg_runtime.errors import EdgesegError
from edgeseg_runtime.onnx_meta import read_metadata
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper


def _model(meta: dict[str, str]) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, "H", "W"])
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "g", [x], [y], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    for k, v in meta.items():
        m.metadata_props.add(key=k, value=v)
    return m


def test_reads_what_onnx_reads_with_weights_inside_or_beside(tmp_path: Path) -> None:
    meta = {"edgeseg.format": "edgeseg.onnx", "edgeseg.classes": '["a", "ü"]', "": "x"}
    onnx.save(_model(meta), str(tmp_path / "one.onnx"))
    ext = tmp_path / "ext.onnx"
    onnx.save(_model(meta), str(ext), save_as_external_data=True, location="d", size_threshold=0)
    for f in (tmp_path / "one.onnx", ext):
        assert read_metadata(f) == meta
    (tmp_path / "d").unlink()  # the weights file is not needed to read the card
    assert read_metadata(ext) == meta


def test_missing_empty_and_foreign_files_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "bad.onnx").write_bytes(b"\xff" * 64)
    for name, needle in (
        ("none.onnx", "not found"),
        ("empty.onnx", "empty"),
        ("bad.onnx", "not a readable"),
    ):
        with pytest.raises(EdgesegError, match=needle):
            read_metadata(tmp_path / name)


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(min_size=1, max_size=512))
def test_random_bytes_give_a_mapping_or_one_error(tmp_path_factory, blob: bytes) -> None:
    f = tmp_path_factory.mktemp("b") / "x.onnx"
    f.write_bytes(blob)
    try:
        assert isinstance(read_metadata(f), dict)
    except EdgesegError as e:
        assert "\n" not in str(e)
