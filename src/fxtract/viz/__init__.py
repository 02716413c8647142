"""Pictures of what a model computes: feature maps, activation statistics, embeddings, the graph.

Everything here is loaded on first use (``import fxtract.viz`` imports neither torch nor
matplotlib). Plotting needs matplotlib and pillow: ``pip install 'fxtract[viz]'``.

* :func:`feature_grid`: one sample of an activation as a PNG (channel tiles, token heat
  map, attention heads); :func:`feature_maps` runs a model and draws chosen nodes.
* :func:`activation_stats`: mean, std, min, max, zeros, dead channels, NaN/Inf per node,
  streamed from a live model or from a feature store; :meth:`StatsReport.histograms`.
* :func:`embedding_scatter`: a 2-D PCA scatter of pooled features, coloured by label.
* :func:`model_graph`: the module hierarchy and data flow, as DOT, SVG or a
  self-contained HTML page.

Example:
    >>> import torch
    >>> from fxtract import viz
    >>> viz.feature_grid(torch.randn(1, 4, 5, 5)).tiles
    4
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "MissingDependencyError",
    "ModelGraph",
    "NodeStats",
    "Picture",
    "StatsReport",
    "activation_stats",
    "embedding_scatter",
    "feature_grid",
    "feature_maps",
    "model_graph",
]

# name -> submodule that defines it (imported on first attribute access)
_LAZY = {
    "MissingDependencyError": "_plot",
    "Picture": "_plot",
    "feature_grid": "grids",
    "feature_maps": "grids",
    "NodeStats": "stats",
    "StatsReport": "stats",
    "activation_stats": "stats",
    "embedding_scatter": "embed",
    "ModelGraph": "graph",
    "model_graph": "graph",
}

if TYPE_CHECKING:  # pragma: no cover
    from ._plot import MissingDependencyError, Picture
    from .embed import embedding_scatter
    from .graph import ModelGraph, model_graph
    from .grids import feature_grid, feature_maps
    from .stats import NodeStats, StatsReport, activation_stats


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fxtract.viz' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"fxtract.viz.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
