"""Strategies: the ways fxtract names nodes and builds extractors (layer L2).

Modules, lowest first: ``base`` (the :class:`Request` a public call hands down and the
:class:`Strategy` interface) < ``fx_passes`` < ``fx``; ``base`` < ``export_trace`` <
``export_graph`` < ``export``; ``base`` < ``hooks``; all < ``chain``.

The order of ``strategy="auto"`` (:func:`chain.run`, the only copy of it):

1. ``fx``: fxtract's FX tracer, every op a node.
2. ``fx`` with automatic leaves: the innermost module whose code FX cannot trace
   (``TraceError.module_path``) becomes a leaf, repeatedly (at most ``MAX_AUTO_LEAVES``).
3. ``export``: ``torch.export`` (non-strict), every ATen op a node; needs ``example_inputs``.
4. ``hooks``: module calls of the model's own forward, any model that runs.

Invariants:

- A strategy that needs ``example_inputs`` for a task (``Strategy.needs_inputs``) is
  skipped without them; if nothing is left, ``StrategyError(needs_inputs=True)``.
- Only a ``TraceError`` or a data-dependent ``ShapeInferenceError`` goes on to the next
  strategy; any other error (a bad name, a bad input) is raised where it happened. With
  an explicit strategy nothing is caught.
- One warning says which strategy was used and why the earlier ones failed (another
  says which modules became leaves).
- ``fx``, ``export`` and ``hooks`` never import each other; what they share lives in the
  foundations (``_naming``, ``_model_state``, ``_fake``, ``_inputs``).
- Strategies never see patterns or set the result's attributes: the public calls
  (:mod:`fxtract._api`) expand globs / ``re:`` queries once with
  :func:`fxtract._select.expand_patterns` over :meth:`Builder.names` and attach
  ``strategy``, ``train_return_nodes``, ``eval_return_nodes``, ``auto_leaves`` and
  ``feature_info`` to every extractor.
- A strategy never changes the user's model or the request: the model's attributes,
  train/eval flags, parameters and buffers are as they were after every task.
"""

from .base import Builder, ModeView, ModeViews, Request, Strategy
from .chain import REGISTRY, Outcome, run

__all__ = ["REGISTRY", "Builder", "ModeView", "ModeViews", "Outcome", "Request", "Strategy", "run"]
