"""The public calls (layer L4): what ``fxtract`` re-exports.

The dataset tier (store, extraction, distributed, viz) imports the public calls from here.
"""

from __future__ import annotations

from ._describe import describe, feature_info
from ._extractor import create_feature_extractor
from ._naming import get_graph_node_names

__all__ = ["create_feature_extractor", "describe", "feature_info", "get_graph_node_names"]
