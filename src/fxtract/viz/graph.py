"""The graph of a model: its module hierarchy and data flow, as DOT, SVG or a self-contained HTML page."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from .._errors import FxtractError, FxtractValueError
from ._plot import write_atomic

__all__ = ["GraphItem", "ModelGraph", "model_graph"]


@dataclass(frozen=True)
class GraphItem:
    """One node of the graph, or one module call that encloses nodes.

    Attributes:
        name: the node's name (``layer1.0.conv1``), as ``create_feature_extractor`` takes it.
        kind: ``"input"``, ``"module"``, ``"function"``, ``"method"``, ``"attribute"``.
        target: the module class or function (``Conv2d``, ``operator.add``).
        shapes: the output shapes, when known.
        params: parameters of a module.
        parent: the enclosing module call (``""`` at the top).
        inputs: the nodes whose outputs this one reads (data flow), when known.
    """

    name: str
    kind: str
    target: str
    shapes: tuple[tuple[Any, ...], ...] = ()
    params: int = 0
    parent: str = ""
    inputs: tuple[str, ...] = ()


class ModelGraph:
    """A model's nodes with their hierarchy and data flow; see :func:`model_graph`.

    Attributes:
        title: the model's class name.
        items: every node and enclosing module call, in execution order.
        selected: the names to highlight.
        strategy: the strategy that named the nodes.
        flow: whether ``inputs`` hold the data flow (FX and exported graphs) or nothing is known of it.
        note: why something is missing (shapes, data flow), or ``""``.
    """

    def __init__(
        self,
        title: str,
        items: Sequence[GraphItem],
        *,
        selected: Sequence[str] = (),
        strategy: str = "fx",
        flow: bool = True,
        note: str = "",
    ) -> None:
        self.title = title
        self.items = list(items)
        self.selected = tuple(selected)
        self.strategy = strategy
        self.flow = flow
        self.note = note
        self._by_name = {item.name: item for item in self.items}
        self.children: dict[str, list[str]] = {}
        for item in self.items:
            self.children.setdefault(item.parent, []).append(item.name)

    def __len__(self) -> int:
        return len(self.items)

    def level(self, name: str) -> int:
        """1 for a top-level item, 2 for its children, ..."""
        level, parent = 1, self._by_name[name].parent
        while parent:
            level, parent = level + 1, self._by_name[parent].parent
        return level

    def _shown_as(self, depth: Optional[int]) -> dict[str, str]:
        """Each item -> the item that stands for it with modules deeper than ``depth`` collapsed."""
        shown: dict[str, str] = {}
        for item in self.items:  # parents come before their children
            parent = item.parent
            if parent and shown[parent] != parent:
                shown[item.name] = shown[parent]
            elif parent and depth is not None and self.level(parent) >= depth:
                shown[item.name] = parent
            else:
                shown[item.name] = item.name
        return shown

    def to_dot(self, *, depth: Optional[int] = None) -> str:
        """Graphviz DOT text: expanded modules as clusters, collapsed ones as boxes, the data flow as edges.

        Without data flow (strategy hooks) the edges follow execution order, dashed.
        """
        shown = self._shown_as(depth)
        chosen = set(self.selected)
        holds_selected = {shown[n] for n in chosen if n in shown}
        lines = [
            "digraph model {",
            f'  graph [rankdir=TB, fontname="Helvetica", fontsize=10, label={_q(self._caption(depth))}, '
            "labelloc=t, newrank=true];",
            '  node [fontname="Helvetica", fontsize=9, shape=box, style="rounded,filled", fillcolor="#eef3fb", '
            'color="#6b8cc7"];',
            '  edge [color="#6b6b6b", arrowsize=0.6];',
        ]

        def emit(parent: str, indent: str) -> None:
            for name in self.children.get(parent, []):
                if shown[name] != name:
                    continue
                item = self._by_name[name]
                kids = self.children.get(name)
                if kids and any(shown[k] == k for k in kids):
                    lines.append(f"{indent}subgraph {_q('cluster_' + name)} {{")
                    lines.append(
                        f'{indent}  label={_q(f"{name} ({item.target})")}; style="rounded"; color="#b8c4d9";'
                    )
                    emit(name, indent + "  ")
                    lines.append(f"{indent}}}")
                    continue
                attrs = {"label": self._label(item, collapsed=bool(kids))}
                if kids:
                    attrs.update(shape="box3d", style="filled", fillcolor="#dfe8f7")
                elif item.kind == "input":
                    attrs.update(shape="ellipse", fillcolor="#e3f2e1", color="#5c9a57")
                elif item.kind != "module":
                    attrs.update(shape="ellipse", fillcolor="#f6f6f6", color="#999999")
                if name in chosen or (kids and name in holds_selected):
                    attrs.update(fillcolor="#ffd966", color="#b8860b", penwidth="2")
                lines.append(f"{indent}{_q(name)} [{', '.join(f'{k}={_q(v)}' for k, v in attrs.items())}];")

        emit("", "  ")
        for tail, head, style in self._edges(shown):
            lines.append(f"  {_q(tail)} -> {_q(head)}" + (" [style=dashed]" if style else "") + ";")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _caption(self, depth: Optional[int]) -> str:
        parts = [f"{self.title}: {len(self.items):,} nodes ({self.strategy})"]
        if depth is not None:
            parts.append(f"modules below depth {depth} collapsed")
        if not self.flow:
            parts.append("edges: execution order (no data flow known)")
        return "; ".join(parts)

    def _label(self, item: GraphItem, collapsed: bool) -> str:
        lines = [item.name, item.target]
        if item.shapes:
            lines.append(" ".join("x".join(str(d) for d in s) for s in item.shapes[:2]))
        if collapsed:
            lines.append(f"({self._count_inside(item.name)} inside)")
        return "\n".join(lines)

    def _count_inside(self, name: str) -> int:
        return sum(1 + self._count_inside(k) for k in self.children.get(name, ()))

    def _edges(self, shown: dict[str, str]) -> list[tuple[str, str, bool]]:
        edges: dict[tuple[str, str], bool] = {}
        if self.flow:
            for item in self.items:
                for source in item.inputs:
                    tail, head = shown.get(source), shown[item.name]
                    if tail and tail != head:
                        edges.setdefault((tail, head), False)
        else:
            visible = [
                n for n in dict.fromkeys(shown[i.name] for i in self.items if not self.children.get(i.name))
            ]
            for tail, head in zip(visible, visible[1:]):
                edges.setdefault((tail, head), True)
        return [(t, h, dashed) for (t, h), dashed in edges.items()]

    def to_svg(self, *, depth: Optional[int] = None, timeout: float = 300.0) -> str:
        """The DOT drawn by Graphviz's ``dot`` (which must be on PATH) as SVG text.

        Raises:
            FxtractValueError: ``dot`` is not installed or failed.
        """
        dot = shutil.which("dot")
        if dot is None:
            raise FxtractValueError(
                "Graphviz's dot is not on PATH; install graphviz, or write the HTML page."
            )
        try:
            done = subprocess.run(
                [dot, "-Tsvg"], input=self.to_dot(depth=depth).encode(), capture_output=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise FxtractValueError(f"dot took more than {timeout:.0f} s; use a smaller --depth.") from None
        if done.returncode != 0:
            raise FxtractValueError(f"dot failed: {done.stderr.decode(errors='replace').strip()[:500]}")
        return done.stdout.decode()

    def to_html(self, *, depth: Optional[int] = 2, title: Optional[str] = None) -> str:
        """A self-contained HTML page (inline script and style, nothing from the network).

        It shows the module hierarchy, expanded to ``depth`` (``None``: all of it); a click expands or collapses a
        module and shows a node's details (shapes, parameters, inputs, consumers); the search
        box finds names; the selected nodes are highlighted. Rows are built only when their
        module is expanded, so a model of thousands of nodes stays responsive.
        """
        from ._page import PAGE

        index = {item.name: i for i, item in enumerate(self.items)}
        consumers: dict[str, list[int]] = {}
        for i, item in enumerate(self.items):
            for source in item.inputs:
                consumers.setdefault(source, []).append(i)
        chosen = set(self.selected)
        data = {
            "title": title or self.title,
            "caption": self._caption(None),
            "note": self.note,
            "depth": depth if depth is not None else 1 << 20,  # None: everything expanded
            "roots": [index[n] for n in self.children.get("", [])],
            "items": [
                {
                    "n": item.name,
                    "k": item.kind,
                    "t": item.target,
                    "s": [list(s) for s in item.shapes],
                    "p": item.params,
                    "u": index.get(item.parent, -1),
                    "c": [index[k] for k in self.children.get(item.name, [])],
                    "i": [index[s] for s in item.inputs if s in index],
                    "o": consumers.get(item.name, []),
                    "x": 1 if item.name in chosen else 0,
                }
                for item in self.items
            ],
        }
        blob = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
        return PAGE.replace("__TITLE__", _html_escape(data["title"])).replace("__DATA__", blob)

    def write(
        self, out: Union[str, os.PathLike], *, depth: Optional[int] = 2, html: bool = False
    ) -> list[Path]:
        """Write ``OUT.dot``, then ``OUT.svg`` when ``dot`` is on PATH, else (or with ``html``) ``OUT.html``.

        ``out``'s suffix (``.dot``, ``.svg``, ``.html``) is dropped. Each file is written
        atomically. Returns the paths written.
        """
        base = Path(out)
        if base.suffix in (".dot", ".svg", ".html", ".htm", ".gv"):
            base = base.with_suffix("")
        written = [write_atomic(base.with_suffix(".dot"), self.to_dot(depth=depth))]
        if not html and shutil.which("dot"):
            try:
                written.append(write_atomic(base.with_suffix(".svg"), self.to_svg(depth=depth)))
                return written
            except FxtractValueError as e:
                warnings.warn(f"{e} Writing the HTML page instead.", stacklevel=2)
        written.append(write_atomic(base.with_suffix(".html"), self.to_html(depth=depth)))
        return written


def _q(text: Any) -> str:
    """A DOT double-quoted string."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def model_graph(
    model: Any,
    example_inputs: Any = None,
    *,
    nodes: Any = None,
    strategy: str = "auto",
    mode: str = "eval",
    tracer_kwargs: Optional[dict[str, Any]] = None,
) -> ModelGraph:
    """The graph of ``model``: every node, the module calls enclosing them, shapes and data flow.

    Args:
        model: the model (never modified).
        example_inputs: what ``forward`` takes; gives the shapes (fake tensors, no real
            forward). ``None``: no shapes (FX only).
        nodes: names or patterns to highlight (``"layer*.relu*"``).
        strategy: as for :func:`fxtract.describe`.
        mode: ``"eval"`` or ``"train"``: the graph of that mode.
        tracer_kwargs: FX tracer options.

    Returns:
        A :class:`ModelGraph`: ``to_dot()``, ``to_svg()``, ``to_html()``, ``write(out)``.

    Raises:
        NodeNotFoundError: a pattern in ``nodes`` matches nothing.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
        >>> graph = model_graph(net, torch.randn(1, 4), nodes=["1"])
        >>> [(i.name, i.inputs) for i in graph.items]
        [('input', ()), ('0', ('input',)), ('1', ('0',))]
    """
    from .._api import describe
    from .._select import select_nodes

    if mode not in ("eval", "train"):
        raise FxtractValueError(f"mode must be 'eval' or 'train'; got {mode!r}.")
    note = ""
    shapes: dict[str, tuple[tuple[Any, ...], ...]] = {}
    try:
        infos = describe(
            model, example_inputs, nodes="*", mode=mode, strategy=strategy, tracer_kwargs=tracer_kwargs
        )
    except FxtractError as e:
        if example_inputs is None or strategy not in ("auto", "fx"):
            raise
        # Shape inference failed on a graph FX traces: draw the graph with the module calls'
        # shapes (one forward on fake tensors, with hooks) rather than not at all.
        try:
            infos = describe(model, None, nodes="*", mode=mode, strategy="fx", tracer_kwargs=tracer_kwargs)
        except FxtractError:
            raise e from None
        reason = " ".join(str(e).split())[:300]
        try:
            hooked = describe(model, example_inputs, mode=mode, strategy="hooks")
            shapes = {i.name: i.shapes for i in hooked}
            note = f"shapes of module calls only (from hooks); FX shape inference failed: {reason}"
        except FxtractError:
            note = f"shapes unavailable: {reason}"
    items = _with_parents(infos)
    parents = {i.parent for i in items}
    flow_names = [i.name for i in items if i.name not in parents and i.kind not in ("input", "output")]
    inputs: dict[str, tuple[str, ...]] = {}
    flow = False
    if infos.strategy in ("fx", "export"):
        try:
            inputs = _data_flow(model, flow_names, tracer_kwargs, mode, infos.strategy, example_inputs)
            flow = True
        except FxtractError as e:
            note = (note + "; " if note else "") + f"no data flow: {' '.join(str(e).split())[:200]}"
    items = [
        GraphItem(
            i.name,
            i.kind,
            i.target,
            i.shapes or shapes.get(i.name, ()),
            i.params,
            i.parent,
            inputs.get(i.name, ()),
        )
        for i in items
    ]
    selected: list[str] = []
    if nodes:
        patterns = [nodes] if isinstance(nodes, str) else list(nodes)
        selected = list(select_nodes(patterns, [i.name for i in items], strict=True))
    return ModelGraph(
        type(model).__name__, items, selected=selected, strategy=infos.strategy, flow=flow, note=note
    )


def _with_parents(infos: Sequence[Any]) -> list[Any]:
    """The infos, minus the output node, with a module entry for every parent named (before its children)."""
    names = {i.name for i in infos}
    out: list[Any] = []
    added: set[str] = set()
    for info in infos:
        if info.kind == "output":
            continue
        missing = []
        parent = info.parent
        while parent and parent not in names and parent not in added:
            missing.append(parent)
            parent = parent.rpartition(".")[0]
        for name in reversed(missing):
            added.add(name)
            out.append(type(info)(name, "module", "", parent=_parent_of(name, names | added)))
        out.append(info)
    order = {n.name: k for k, n in enumerate(out)}
    # A module call is listed after its last node (it returns then); its children must follow it.
    return _parents_first(out, order)


def _parent_of(name: str, known: set[str]) -> str:
    parent = name.rpartition(".")[0]
    while parent and parent not in known:
        parent = parent.rpartition(".")[0]
    return parent


def _parents_first(items: list[Any], order: dict[str, int]) -> list[Any]:
    """Execution order, except that each module call comes just before its first child."""
    children: dict[str, list[Any]] = {}
    for item in items:
        children.setdefault(item.parent, []).append(item)
    first: dict[str, int] = {}

    def start(item: Any) -> int:
        if item.name not in first:
            kids = children.get(item.name, [])
            first[item.name] = min([order[item.name], *(start(k) for k in kids)])
        return first[item.name]

    result: list[Any] = []

    def walk(parent: str) -> None:
        for item in sorted(children.get(parent, []), key=start):
            result.append(item)
            walk(item.name)

    walk("")
    return result


def _data_flow(
    model: Any,
    names: list[str],
    tracer_kwargs: Optional[dict[str, Any]],
    mode: str,
    strategy: str,
    example_inputs: Any,
) -> dict[str, tuple[str, ...]]:
    """``{node: the named nodes it reads}``, from the graph the strategy traced.

    FX: an extractor returning every node; export: the exported graph with fxtract's names.
    """
    if strategy == "export":
        from .._strategies.export_trace import trace_export

        trace = trace_export(model, example_inputs, dynamic_batch=False)[mode]
        return _flow(dict(trace.node_to_qualname), names)
    from .._api import create_feature_extractor

    extractor = create_feature_extractor(
        model, return_nodes={n: n for n in names}, tracer_kwargs=tracer_kwargs, strategy="fx"
    )
    graph = getattr(extractor, f"{mode}_graph", extractor.graph)
    output = next(n for n in graph.nodes if n.op == "output")
    named: dict[Any, str] = {node: key for key, node in output.args[0].items()}
    for node in graph.nodes:
        if node.op == "placeholder":
            named[node] = node.target
    return _flow(named, names)


def _flow(named: dict[Any, str], names: list[str]) -> dict[str, tuple[str, ...]]:
    """Edges between named fx nodes, walking through the unnamed ones."""
    primary = {key: node for node, key in named.items()}
    for node, key in list(named.items()):  # a returned copy (clone) stands for what it copied
        if node.op in ("call_method", "call_function") and "clone" in str(node.target):
            for source in node.all_input_nodes:
                if source not in named:
                    named[source] = key
                    primary[key] = source
    memo: dict[Any, frozenset[str]] = {}

    def sources(node: Any) -> frozenset[str]:
        if node in named:
            return frozenset((named[node],))
        if node not in memo:
            memo[node] = frozenset().union(*(sources(s) for s in node.all_input_nodes))
        return memo[node]

    rank = {name: k for k, name in enumerate(names)}
    flow: dict[str, tuple[str, ...]] = {}
    for key, node in primary.items():
        reads = [
            s
            for inp in node.all_input_nodes
            for s in sorted(sources(inp), key=lambda n: rank.get(n, -1))
            if s != key
        ]
        flow[key] = tuple(dict.fromkeys(reads))
    return flow
