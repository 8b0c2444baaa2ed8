"""Which module of the PyTorch network each node of an exported ONNX file came from.

Mixed precision names what stays in fp32 by *module* (``encoder.stages.6``,
``decoder.head``), not by ONNX node: node names differ between two exports of one network
(the int8 graph folds BatchNorm and rewrites transposed convs; NNCF quantizes the plain
export), while the module paths do not. PyTorch's dynamo exporter records each node's
module path in its ``pkg.torch.onnx.name_scopes`` metadata; the TorchScript exporter
writes it into the node name (``/encoder/stages.6/stages.6.0/project/Conv``).
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "AUTO_GROUPS",
    "WEIGHT_OPS",
    "module_groups",
    "module_of",
    "nodes_in_modules",
    "truncate",
]

#: ONNX ops that carry weights: a module is worth keeping in fp32 only if it has one.
WEIGHT_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def module_of(node: Any) -> str:
    """The dotted module path a node was exported from ("" for the network itself)."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = ast.literal_eval(prop.value)  # ['', 'encoder', ..., 'encoder.x', 'op']
            return scopes[-2] if len(scopes) >= 2 else ""
    if node.name.startswith("/"):  # TorchScript: /encoder/stages.6/stages.6.0/project/Conv
        parts = node.name.strip("/").split("/")[:-1]
        return parts[-1] if parts and "." in parts[-1] else ".".join(parts)
    return ""


def truncate(path: str, depth: int | None) -> str:
    """``path`` cut to ``depth`` parts, an index counting with its container's name:
    ``encoder.stages.6.0.dw`` at depth 2 is ``encoder.stages.6`` (a stage), at depth 3
    ``encoder.stages.6.0`` (a block); ``None`` keeps the whole path (one layer)."""
    if depth is None or not path:
        return path
    parts: list[str] = []
    for tok in path.split("."):
        if (
            tok.isdigit()
            and parts
            and not re.search(r"\.\d+$", parts[-1])
            and not parts[-1].isdigit()
        ):
            parts[-1] += "." + tok
        else:
            parts.append(tok)
    return ".".join(parts[:depth])


def _load(path: str | os.PathLike[str]) -> Any:
    import onnx

    return onnx.load(str(path), load_external_data=False)


#: Groups the automatic depth aims for: enough to tell the network's parts apart, few
#: enough that measuring each one alone (twice) stays short.
AUTO_GROUPS = 8


def module_groups(path: str | os.PathLike[str], depth: int | None = None) -> dict[str, int]:
    """The modules (at ``depth``, see :func:`truncate`) of an exported file that hold
    weight layers, in graph order, with their number of weight layers.

    ``depth=None`` picks the shallowest depth with at least :data:`AUTO_GROUPS` groups
    (PP-LiteSeg-Lite0: its 7 encoder stages, stem and 6 decoder parts); a large depth
    gives one group per layer.
    """
    mods = [module_of(n) for n in _load(path).graph.node if n.op_type in WEIGHT_OPS]
    for d in [depth] if depth is not None else range(1, 16):
        groups: dict[str, int] = {}
        for key in (truncate(m, d) for m in mods if m):
            groups[key] = groups.get(key, 0) + 1
        if depth is not None or len(groups) >= min(AUTO_GROUPS, len(mods)):
            break
    return groups


def nodes_in_modules(path: str | os.PathLike[str], modules: Iterable[str]) -> list[str]:
    """Names of the nodes of ``path`` exported from any of ``modules`` or their children,
    and of the weightless ops that read only such nodes' outputs (an activation that is
    a sibling module, the logits' resize and crop after a kept head): quantizing those
    would put the kept part's output through int8 anyway."""
    wanted = tuple(m for m in modules if m)
    graph = _load(path).graph
    consts = {t.name for t in graph.initializer}
    kept_out: set[str] = set()
    out = []
    for node in graph.node:  # topological order
        mod = module_of(node)
        mine = any(mod == m or mod.startswith(m + ".") for m in wanted)
        if not mine and node.op_type not in WEIGHT_OPS:
            ins = [i for i in node.input if i and i not in consts]
            mine = bool(ins) and all(i in kept_out for i in ins)
        if mine:
            out.append(node.name)
            kept_out.update(node.output)
    return out
