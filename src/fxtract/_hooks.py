"""Import paths of strategy "hooks" that pickled extractors reference (fxtract 0.1).

The code lives in :mod:`fxtract._strategies.hooks`.
"""

from ._strategies.hooks import HookFeatureExtractor, hook_node_names

__all__ = ["HookFeatureExtractor", "hook_node_names"]
