"""The errors of the store (subclasses of fxtract's own; no torch)."""

from __future__ import annotations

from .._errors import FxtractError

__all__ = ["CorruptStoreError", "StoreError", "StoreMismatchError", "StoreWriteError"]


class StoreError(FxtractError, RuntimeError):
    """A feature store cannot be opened or written."""


class CorruptStoreError(StoreError):
    """A shard listed by the store is missing, torn or not a shard; the message names it."""


class StoreWriteError(StoreError):
    """A shard or manifest could not be written (permissions, a full disk); committed shards are intact."""


class StoreMismatchError(FxtractError, ValueError):
    """The directory holds a store made with another model, nodes, pooling or preprocessing."""
