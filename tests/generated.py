"""A hypothesis strategy for random ``nn.Module`` trees, each one printable as runnable source.

``models()`` draws a :class:`GenModel`: Python source that defines the module classes, a
``build()`` function that assembles the tree with ``add_module`` (so names may hold regex and
glob characters), ``leaf_modules(m)`` (leaves by class, instance and glob pattern) and
``inputs()``. The model is built by importing that source as a real module (so extractors and
models pickle), and ``repro()`` is the whole script: a failing example prints as code to paste.

What the trees hold: nesting up to three levels; a module called several times and a module
shared by several parents; functional, aliasing and in-place ops; blocks that return tuples,
dicts and namedtuples; names such as ``ln_1``, ``relu`` beside ``relu_1``, ``conv(a)``,
``x[0]``, ``a+b``; ``Sequential`` / ``ModuleList`` / ``ModuleDict``; branches on shapes and
``int(x.shape[0])`` (FX cannot trace them, torch.export can), on values (only hooks can run
them) and on ``self.training`` (the train and eval graphs differ).

The patterns of issue #17 (an in-place op on a value that may alias a returned one, a block
writing into its input, an in-place op after a tuple-returning call) are in by default
(``known_defects=False`` leaves them out, to look for other defects without those).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

# Names a child may get: plain, ``_<int>`` endings that collide with repeat suffixes, regex
# and glob characters, unicode. Never a dot (add_module refuses it) nor an empty name, and
# never the name of an op the forward may call (``relu``, ``add``): op nodes and module calls
# share one namespace per parent, which the forward-hook oracle cannot see.
PLAIN_NAMES = ["lin", "act", "act_1", "ln_1", "ln", "blk", "blk_2", "x_0", "layer1", "fc_3"]
ODD_NAMES = ["conv(a)", "x[0]", "a+b", "m$", "q?", "s*t", "^h", "a|b", "h{2}", "λ", "sp ace"]
GLOB_CHARS = set("*?[")

# (constructor, how its output relates to its input): "fresh" a new tensor, "alias" may be the
# input itself (Identity, Dropout in eval), "inplace" writes into its input and returns it.
LAYERS = [
    ("nn.Linear(4, 4)", "fresh"),
    ("nn.ReLU()", "fresh"),
    ("nn.Tanh()", "fresh"),
    ("nn.GELU()", "fresh"),
    ("nn.LayerNorm(4)", "fresh"),
    ("nn.BatchNorm1d(4)", "fresh"),
    ("nn.Sigmoid()", "fresh"),
    ("nn.ReLU(inplace=True)", "inplace"),
    ("nn.Dropout(0.0)", "alias"),
    ("nn.Identity()", "alias"),
]
FRESH_OPS = [
    "h = torch.relu(h)",
    "h = h * 2",
    "h = F.gelu(h) + h",
    "h = torch.tanh(h)",
    "h = h.sum(-1, keepdim=True) + h",
    "h = torch.stack([h, h * 2]).sum(0)",
    "h = torch.cat([h, h], 1).reshape(h.shape[0], 2, 4).mean(1)",
]
ALIAS_OPS = [
    "h = h.view(h.shape[0], -1)",
    "h = h.reshape(-1, 4)",
    "h = h.contiguous()",
    "h = h.to(torch.float32)",
]
INPLACE_OPS = ["h.add_(1)", "h.relu_()", "h.mul_(0.5)", "h += 1", "h.clamp_(min=-1.0)"]
RETURN_KINDS = ["tensor", "tuple", "dict", "namedtuple"]


class GenModel:
    """A generated model: its source, and what the generator knows about it.

    Flags: ``value_branch`` (forward reads tensor values: only hooks can run it),
    ``untraceable`` (FX cannot trace it whole), ``shared_parents`` (a module is called from two
    parents), ``train_branch`` (``if self.training``), ``class_leaves`` (leaf_modules holds
    classes only, as torchvision accepts), ``has_leaves``.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        # The generator writes its flags into the source, so a pasted repro carries them.
        line = next(ln for ln in source.splitlines() if ln.startswith("FLAGS = "))
        flags = ast.literal_eval(line[len("FLAGS = ") :])
        self.value_branch = flags.get("value_branch", False)
        self.untraceable = flags.get("untraceable", False)
        self.shared_parents = flags.get("shared_parents", False)
        self.train_branch = flags.get("train_branch", False)
        self.class_leaves = flags.get("class_leaves", True)
        self.has_leaves = flags.get("has_leaves", False)
        self._module: Any = None

    def module(self) -> Any:
        """The source imported as a real module (registered in ``sys.modules``, so pickle finds it)."""
        if self._module is None:
            digest = hashlib.sha1(self.source.encode()).hexdigest()[:16]
            name = f"fxtract_generated_{digest}"
            if name not in sys.modules:
                path = Path(tempfile.gettempdir()) / "fxtract_generated" / f"{name}.py"
                path.parent.mkdir(parents=True, exist_ok=True)
                if not path.exists() or path.read_text() != self.source:
                    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # pytest-xdist workers share the folder
                    tmp.write_text(self.source)
                    os.replace(tmp, path)
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                spec.loader.exec_module(module)
            self._module = sys.modules[name]
        return self._module

    def build(self) -> Any:
        """A fresh model (same weights every time) in eval mode."""
        return self.module().build().eval()

    def leaf_modules(self, model: Any) -> list:
        return self.module().leaf_modules(model)

    def tracer_kwargs(self, model: Any) -> dict:
        leaves = self.leaf_modules(model)
        return {"leaf_modules": leaves} if leaves else {}

    def inputs(self) -> Any:
        return self.module().inputs()

    def repro(self) -> str:
        """A runnable script: the model, and how to get the extractor the failing property built."""
        return (
            self.source
            + "\n\nif __name__ == '__main__':\n"
            + "    import fxtract\n"
            + "    m = build()\n"
            + "    print(fxtract.get_graph_node_names(m, {'leaf_modules': leaf_modules(m)}"
            + ", example_inputs=inputs()))\n"
        )

    def __repr__(self) -> str:  # hypothesis prints the falsifying example with repr
        return "GenModel(source=<<<\n" + self.source + "\n>>>)"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


class _Ctx:
    def __init__(self, known_defects: bool) -> None:
        self.known_defects = known_defects
        self.classes: list[str] = []  # class sources, innermost first
        self.build: list[str] = []
        self.n_classes = 0
        self.n_vars = 0
        self.layers: list[tuple[str, str, str]] = []  # (var, kind, path) of leaf layers built so far
        self.paths: list[str] = []  # every module path (first path of a shared module)
        self.block_classes: list[str] = []
        self.flags: dict[str, bool] = {"value_branch": False, "untraceable": False}
        self.flags.update(shared_parents=False, train_branch=False)

    def var(self, prefix: str) -> str:
        self.n_vars += 1
        return f"{prefix}{self.n_vars}"


def _access(name: str) -> str:
    """How forward reaches child ``name``: ``self.name`` or ``getattr(self, "conv(a)")``."""
    return f"self.{name}" if name.isidentifier() and name.isascii() else f"getattr(self, {name!r})"


def _draw_name(draw: Any, used: set[str]) -> str:
    name = draw(st.sampled_from(PLAIN_NAMES + ODD_NAMES))
    while name in used:
        name = f"{name}_{len(used)}"
    used.add(name)
    return name


@st.composite
def _block(draw: Any, ctx: _Ctx, path: str, depth: int, ret: str) -> tuple[str, str, bool]:
    """Draw one block class; returns (class name, build variable, whether it returns a fresh tensor)."""
    ctx.n_classes += 1
    cls = f"Block{ctx.n_classes}"
    var = ctx.var("b")
    ctx.build.append(f"{var} = {cls}()")
    used: set[str] = set()
    children: list[tuple[str, str, Any]] = []  # (name, kind, info)
    for _ in range(draw(st.integers(1, 4))):
        options = ["layer", "layer", "seq", "mlist", "mdict"]
        if depth < 3:
            options += ["block", "block"]
        if ctx.layers:
            options.append("shared")
        kind = draw(st.sampled_from(options))
        name = _draw_name(draw, used)
        child_path = f"{path}.{name}" if path else name
        if kind == "layer":
            ctor, how = draw(st.sampled_from(LAYERS))
            lvar = ctx.var("l")
            ctx.build.append(f"{lvar} = {ctor}")
            ctx.layers.append((lvar, how, child_path))
            ctx.paths.append(child_path)
            ctx.build.append(f"{var}.add_module({name!r}, {lvar})")
            children.append((name, "layer", how))
        elif kind == "shared":
            lvar, how, _ = draw(st.sampled_from(ctx.layers))
            ctx.build.append(f"{var}.add_module({name!r}, {lvar})  # shared with another parent")
            ctx.flags["shared_parents"] = True
            children.append((name, "layer", how))
        elif kind in ("seq", "mlist", "mdict"):
            items = draw(st.lists(st.sampled_from(LAYERS), min_size=1, max_size=3))
            if not ctx.known_defects:  # an in-place layer only right after a fresh one
                items = [
                    it
                    for i, it in enumerate(items)
                    if it[1] != "inplace" or (i and items[i - 1][1] == "fresh")
                ]
                items = items or [LAYERS[0]]
            ctx.paths.append(child_path)
            if kind == "mdict":
                keys: set[str] = set()
                ks = [_draw_name(draw, keys) for _ in items]
                body = ", ".join(f"{k!r}: {c}" for k, (c, _) in zip(ks, items))
                ctx.build.append(f"{var}.add_module({name!r}, nn.ModuleDict({{{body}}}))")
                ctx.paths += [f"{child_path}.{k}" for k in ks]
            else:
                ctor = "nn.Sequential" if kind == "seq" else "nn.ModuleList"
                body = ", ".join(c for c, _ in items)
                body = f"[{body}]" if kind == "mlist" else body
                ctx.build.append(f"{var}.add_module({name!r}, {ctor}({body}))")
                ctx.paths += [f"{child_path}.{i}" for i in range(len(items))]
            fresh = items[-1][1] == "fresh"
            starts_inplace = items[0][1] == "inplace"
            children.append((name, kind, (fresh, starts_inplace)))
        else:
            sub_ret = draw(st.sampled_from(RETURN_KINDS))
            ctx.paths.append(child_path)
            _, sub_var, sub_fresh = draw(_block(ctx, child_path, depth + 1, sub_ret))
            ctx.build.append(f"{var}.add_module({name!r}, {sub_var})")
            children.append((name, "block", (sub_ret, sub_fresh)))

    lines = ["h = x"]
    fresh = False  # h is the block's input: never written in place (issue #17.6)
    may_inplace = lambda: fresh or ctx.known_defects  # noqa: E731
    n_steps = draw(st.integers(1, 6))
    called = set()
    for step in range(n_steps + len(children)):
        # Every child gets called at least once (after the drawn steps), some several times.
        if step >= n_steps:
            pending = [c for c in children if c[0] not in called]
            if not pending:
                break
            action = ("call", pending[0])
        else:
            choice = draw(
                st.sampled_from(["call", "call", "fresh", "alias", "inplace", "residual", "branch"])
            )
            action = (choice, draw(st.sampled_from(children)))
        what, (name, kind, info) = action
        acc = _access(name)
        if what == "call":
            called.add(name)
            if kind == "layer":
                if info == "inplace" and not may_inplace():
                    lines.append("h = h + 0  # a fresh tensor before an in-place layer")
                lines.append(f"h = {acc}(h)")
                fresh = info == "fresh"
            elif kind in ("seq", "mdict", "mlist"):
                seq_fresh, starts_inplace = info
                if starts_inplace and not may_inplace():
                    lines.append("h = h + 0  # a fresh tensor before an in-place layer")
                if kind == "seq":
                    lines.append(f"h = {acc}(h)")
                elif kind == "mlist":
                    lines += [f"for m in {acc}:", "    h = m(h)"]
                else:
                    lines += [f"for k in {acc}:", f"    h = {acc}[k](h)"]
                fresh = seq_fresh
            else:
                sub_ret, sub_fresh = info
                get = {"tensor": "", "tuple": "[0]", "dict": '["a"]', "namedtuple": ".a"}[sub_ret]
                lines.append(f"h = {acc}(h){get}")
                fresh = sub_fresh and sub_ret == "tensor"  # a tuple item then in place: issue #17.5
        elif what == "fresh":
            lines.append(draw(st.sampled_from(FRESH_OPS)))
            fresh = True
        elif what == "alias":
            lines.append(draw(st.sampled_from(ALIAS_OPS)))
            fresh = False
        elif what == "inplace":
            if may_inplace():
                lines.append(draw(st.sampled_from(INPLACE_OPS)))
            else:
                lines.append(draw(st.sampled_from(FRESH_OPS)))
                fresh = True
        elif what == "residual":
            if (kind == "layer" and info != "inplace") or (kind == "block" and info[0] == "tensor"):
                called.add(name)
                lines.append(f"h = h + {acc}(h)")
                fresh = True
        else:
            branch = draw(st.sampled_from(["shape", "int", "value", "training"]))
            if branch == "shape":
                lines += ["if h.shape[-1] == 4:", "    h = h * 2", "else:", "    h = h - 1"]
                ctx.flags["untraceable"] = True
                fresh = True
            elif branch == "int":
                lines.append("h = h * (int(h.shape[0]) > 0)")
                ctx.flags["untraceable"] = True
                fresh = True
            elif branch == "value":
                lines += ["if h.sum() > 0:", "    h = h + 1", "else:", "    h = h - 1"]
                ctx.flags["untraceable"] = ctx.flags["value_branch"] = True
                fresh = True
            else:
                lines += ["if self.training:", "    h = h * 3"]
                ctx.flags["train_branch"] = True
    lines.append(
        {
            "tensor": "return h",
            "tuple": "return h, h * 2",
            "dict": 'return {"a": h, "b": h + 1}',
            "namedtuple": "return Pair(h, h - 1)",
        }[ret]
    )
    body = "\n".join("        " + line for line in lines)
    ctx.classes.append(f"class {cls}(nn.Module):\n    def forward(self, x):\n{body}\n")
    ctx.block_classes.append(cls)
    return cls, var, fresh and ret == "tensor"


HEADER = '''"""A model generated by tests/generated.py."""

import collections

import torch
import torch.nn.functional as F
from torch import nn

Pair = collections.namedtuple("Pair", ["a", "b"])

'''


@st.composite
def models(draw: Any, *, known_defects: bool = True) -> GenModel:
    """A random module tree as a :class:`GenModel`."""
    ctx = _Ctx(known_defects)
    ret = draw(st.sampled_from(RETURN_KINDS))
    _, root, _ = draw(_block(ctx, "", 0, ret))

    leaves: list[str] = []
    class_only = True
    for kind in draw(st.lists(st.sampled_from(["class", "instance", "pattern"]), max_size=2, unique=True)):
        if kind == "class":
            leaves.append(draw(st.sampled_from([*ctx.block_classes[:-1], "nn.Linear", "nn.LayerNorm"])))
        elif kind == "instance" and ctx.paths:
            leaves.append(f"m.get_submodule({draw(st.sampled_from(ctx.paths))!r})")
            class_only = False
        elif kind == "pattern":
            plain = [p for p in ctx.paths if not GLOB_CHARS & set(p)]
            if plain:
                last = draw(st.sampled_from(plain)).rsplit(".", 1)[-1]
                leaves.append(repr(f"*{last}"))
                class_only = False
    flags = {**ctx.flags, "class_leaves": class_only, "has_leaves": bool(leaves)}
    source = (
        HEADER
        + f"FLAGS = {flags!r}\n\n\n"
        + "\n\n".join(ctx.classes)
        + "\n\ndef build():\n    torch.manual_seed(0)\n"
        + "".join(f"    {line}\n" for line in ctx.build)
        + f"    return {root}\n"
        + "\n\ndef leaf_modules(m):\n"
        + f"    return [{', '.join(leaves)}]\n"
        + "\n\ndef inputs():\n    return torch.randn(2, 4, generator=torch.Generator().manual_seed(1))\n"
    )
    return GenModel(source)
