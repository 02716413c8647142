"""What :func:`fxtract.describe` returns: :class:`NodeInfo` and :class:`NodeInfoList` (torch-free)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional

__all__ = ["NodeInfo", "NodeInfoList"]


@dataclass(frozen=True)
class NodeInfo:
    """One node of a traced model (or one module call), as :func:`describe` reports it.

    Attributes:
        name: the node's name, as ``create_feature_extractor`` accepts it.
        kind: ``"input"``, ``"module"``, ``"function"``, ``"method"``, ``"attribute"`` or
            ``"output"``. Module calls that FX traces through (``layer1``) are ``"module"``
            too: their output is what the call returned. With strategy ``"export"`` a node
            is ``"input"``, ``"module"`` (the value a module call returned) or
            ``"function"`` (an ATen op); with ``"hooks"`` every node is a ``"module"`` call.
        target: the module's class name, the function's qualified name
            (``torch.flatten``, ``operator.add``; ``aten.conv2d.default`` with export), the
            method name or the attribute path.
        shapes: the shape of every tensor in the output (nested outputs, dataclasses and
            Hugging Face ``ModelOutput`` included, flattened in pytree order); empty when
            shapes were not computed or the output holds no tensor. With export, a size that
            depends on tensor values (``nonzero``) is the symbol's name (``"u0"``).
        dtypes: the dtype of each of those tensors (``"float32"``).
        params: number of parameters of the module (module nodes only, else 0).
        modes: ``"both"`` when the node is in the train and the eval graph, else
            ``"train"`` or ``"eval"``.
        parent: name of the enclosing module call (``""`` at the top level).
    """

    name: str
    kind: str
    target: str
    shapes: tuple[tuple[int, ...], ...] = ()
    dtypes: tuple[str, ...] = ()
    params: int = 0
    modes: str = "both"
    parent: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (shapes as lists).

        Example:
            >>> NodeInfo("fc", "module", "Linear", ((1, 2),), ("float32",), 6).to_dict()["shapes"]
            [[1, 2]]
        """
        return {
            "name": self.name,
            "kind": self.kind,
            "target": self.target,
            "shapes": [list(s) for s in self.shapes],
            "dtypes": list(self.dtypes),
            "params": self.params,
            "modes": self.modes,
            "parent": self.parent,
        }


class NodeInfoList(list):  # type: ignore[type-arg]
    """What :func:`describe` returns: a ``list`` of :class:`NodeInfo`, and how it was computed.

    It compares, slices, iterates and pickles as a plain list; the attributes say which
    strategy named the nodes and computed the shapes.

    Attributes:
        strategy: ``"fx"``, ``"export"`` or ``"hooks"``: the strategy used (with
            ``strategy="auto"``, the first that worked).
        auto_leaves: ``{module path: why}``: modules FX could not trace that became leaves
            (``strategy="auto"``); empty otherwise.
        real_forward: the modes (``"train"``, ``"eval"``) in which strategy ``"hooks"`` had
            to run a real forward (under ``torch.no_grad()``) because the model cannot run on
            fake tensors; empty when nothing real ran.

    Example:
        >>> infos = NodeInfoList([NodeInfo("fc", "module", "Linear")], strategy="hooks")
        >>> infos.strategy, infos == [NodeInfo("fc", "module", "Linear")]
        ('hooks', True)
    """

    def __init__(
        self,
        infos: Iterable[NodeInfo] = (),
        *,
        strategy: str = "fx",
        auto_leaves: Optional[dict[str, str]] = None,
        real_forward: tuple[str, ...] = (),
    ) -> None:
        super().__init__(infos)
        self.strategy = strategy
        self.auto_leaves = dict(auto_leaves or {})
        self.real_forward = tuple(real_forward)

    def __repr__(self) -> str:
        return f"NodeInfoList({list.__repr__(self)}, strategy={self.strategy!r})"
