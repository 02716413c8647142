"""Import paths of strategy "export" that pickled extractors reference (fxtract 0.1).

The code lives in :mod:`fxtract._strategies.export_trace` and :mod:`fxtract._strategies.export_graph`.
"""

from ._strategies.export_graph import (  # noqa: F401
    ExportFeatureExtractor,
    _InputCheck,
    _Op,
    _rebuild,
    _Ref,
    _unpickle,
    create_export_extractor,
)
from ._strategies.export_trace import (  # noqa: F401
    ExportTrace,
    FailedTrace,
    export_module_calls,
    export_node_names,
    mode_unavailable,
    trace_export,
)

__all__ = [
    "ExportFeatureExtractor",
    "ExportTrace",
    "create_export_extractor",
    "export_module_calls",
    "export_node_names",
    "trace_export",
]
