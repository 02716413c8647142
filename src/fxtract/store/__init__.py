"""``fxtract.store``: the on-disk feature store that ``fxtract.extract`` writes, and its reader.

A store is a directory::

    manifest.json          what it holds: model, nodes, keys (shape, dtype), pooling,
                           preprocessing, shards -> index ranges, skipped samples, versions
    samples.jsonl          one line per dataset sample: {"index", "source", "label"}
    shard-000000.safetensors   (or shard-000000/ with one .npy per key, for --format npy)
    parts/                 one file per writer (merged into manifest.json)

Each shard holds one batch-major array per output key and ``__index__``, the int64 dataset
indices of its rows. Only numpy and safetensors are needed to read it; this package does not
import torch (``FeatureArray.torch()`` imports it when called).

Example:
    >>> import fxtract, torch, tempfile
    >>> d = tempfile.mkdtemp()
    >>> m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    >>> _ = fxtract.extract(m, torch.randn(6, 3, 8, 8), d, nodes=["1"], pool="avg", progress=False)
    >>> store = open_features(d)
    >>> len(store), store["1"].shape, store["1"].dtype
    (6, (6, 4), dtype('float32'))
"""

from __future__ import annotations

from ._errors import CorruptStoreError, StoreError, StoreMismatchError, StoreWriteError
from ._manifest import FORMAT_VERSION, merge
from ._reader import FeatureArray, FeatureStore, open_features

FORMATS = ("safetensors", "npy")

__all__ = [
    "FORMATS",
    "FORMAT_VERSION",
    "CorruptStoreError",
    "FeatureArray",
    "FeatureStore",
    "StoreError",
    "StoreMismatchError",
    "StoreWriteError",
    "merge",
    "open_features",
]
