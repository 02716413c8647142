"""fxtract: intermediate activations of any PyTorch model, by name.

A drop-in for ``torchvision.models.feature_extraction`` that is correct where it is
silently wrong, linear-time on huge graphs, and works on models FX cannot trace.

``import fxtract`` does not import torch: the public names load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import (
    FxtractError,
    NodeNotFoundError,
    ReturnNodesError,
    StrategyError,
    TraceError,
)

__version__ = "0.1.0"

# name -> private module that defines it (imported on first attribute access)
_LAZY = {
    "LeafModuleAwareTracer": "_naming",
    "NodePathTracer": "_naming",
    "get_graph_node_names": "_naming",
    "_is_subseq": "_naming",
    "_warn_graph_differences": "_naming",
    "create_feature_extractor": "_extractor",
    "DualGraphModule": "_graph_module",
    "describe": "_describe",
    "feature_info": "_describe",
    "NodeInfo": "_describe",
    "NodeInfoList": "_describe",
    "select_nodes": "_select",
    "extract": "_extract",
    "open_features": "store",
}

__all__ = [
    "DualGraphModule",
    "FxtractError",
    "LeafModuleAwareTracer",
    "NodeInfo",
    "NodeInfoList",
    "NodeNotFoundError",
    "NodePathTracer",
    "ReturnNodesError",
    "StrategyError",
    "TraceError",
    "__version__",
    "create_feature_extractor",
    "describe",
    "extract",
    "feature_info",
    "get_graph_node_names",
    "open_features",
    "select_nodes",
]

if TYPE_CHECKING:  # pragma: no cover
    from ._describe import NodeInfo, NodeInfoList, describe, feature_info
    from ._extract import extract
    from ._extractor import create_feature_extractor
    from ._graph_module import DualGraphModule
    from ._naming import (
        LeafModuleAwareTracer,
        NodePathTracer,
        _is_subseq,  # noqa: F401
        _warn_graph_differences,  # noqa: F401
        get_graph_node_names,
    )
    from ._select import select_nodes
    from .store import open_features


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fxtract' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"fxtract.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
