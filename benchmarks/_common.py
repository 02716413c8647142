"""Shared helpers for the fxtract benchmarks (timing, models, tables).

Every benchmark measures fxtract and its peer (torchvision) in the same process,
round-robin: each repetition runs every contender once, in a new random order
(seeded), after a warm-up call of each. Times are medians; the tables report ratios against the peer or the floor measured in
that same run (medians of per-repetition ratios).
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import platform
import random
import statistics
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable, Optional

# Benchmark the checkout's fxtract (src layout), installed or not.
_SRC = Path(__file__).resolve().parent.parent / "src"
if (_SRC / "fxtract").is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

import torch  # noqa: E402
from torch import fx, nn  # noqa: E402

__all__ = [
    "COMPUTE_OPS",
    "FloorTracer",
    "SyntheticNet",
    "build_model",
    "clone_tree",
    "compute_nodes",
    "count_clones",
    "floor_traces",
    "fmt_ms",
    "fmt_ratio",
    "header",
    "markdown_table",
    "median",
    "paired_ratio",
    "pick_names",
    "quiet",
    "round_robin",
    "setup_threads",
    "timed",
    "tree_equal",
]


# ---------------------------------------------------------------------------------------------
# Machine


def setup_threads() -> int:
    """Use as many intra-op threads as this process may run on; returns that number."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


def header(title: str, args: Any = None) -> str:
    """One line describing the run (for the top of a report)."""
    try:
        load = " load avg {:.2f} {:.2f} {:.2f},".format(*os.getloadavg())
    except OSError:  # pragma: no cover
        load = ""
    import torchvision

    cpu = platform.processor() or platform.machine()
    line = (
        f"## {title}\n\n"
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, Python "
        f"{platform.python_version()}, {cpu}, {torch.get_num_threads()} threads,{load} "
        f"{'quick' if getattr(args, 'quick', False) else 'full'} run"
    )
    return line


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Suppress warnings (the train/eval difference notes of both libraries, deprecations)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ---------------------------------------------------------------------------------------------
# Timing


def round_robin(
    contenders: dict[str, Callable[[], Any]],
    reps: int,
    *,
    warmup: int = 1,
    budget_s: Optional[float] = None,
    min_reps: int = 3,
    round_estimate_s: Optional[float] = None,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Seconds per call of each contender, measured round-robin.

    Each repetition calls every contender once, in a new (seeded) random order, so that
    no contender always runs first or right after the same other one (a fixed cyclic
    order would charge any after-effect of one call to the same neighbour every time).
    ``gc.collect()`` runs before every call, for every contender alike. With
    ``budget_s``, the number of repetitions is lowered (not below ``min_reps``) so that
    the timed repetitions take about that long, estimated from the warm-up (or from
    ``round_estimate_s``, the seconds of one call of each, when the caller already
    warmed the contenders up and passes ``warmup=0``).
    """
    names = list(contenders)
    warm: dict[str, float] = dict.fromkeys(names, 0.0)
    for _ in range(warmup):
        for name in names:
            gc.collect()
            t0 = time.perf_counter()
            contenders[name]()
            warm[name] = time.perf_counter() - t0
    per_rep = sum(warm.values()) if warmup else (round_estimate_s or 0.0)
    if budget_s is not None and per_rep > 0:
        reps = max(min_reps, min(reps, math.floor(budget_s / per_rep)))
    times: dict[str, list[float]] = {name: [] for name in names}
    rng = random.Random(seed)
    for _ in range(reps):
        order = list(names)
        rng.shuffle(order)
        for name in order:
            gc.collect()
            t0 = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def round_robin_after_warmup(
    contenders: dict[str, Callable[[], Any]], first: dict[str, float], args: Any
) -> dict[str, list[float]]:
    """:func:`round_robin` for contenders already called once (their warm-up, timed in ``first``).

    ``args`` carries the script's ``reps``, ``budget`` and ``min_reps``; the first calls'
    times estimate one round, to fit the budget.
    """
    return round_robin(
        contenders,
        args.reps,
        warmup=0,
        budget_s=args.budget,
        min_reps=args.min_reps,
        round_estimate_s=sum(first.values()),
    )


def exit_status(failures: Sequence[str], what: str = "") -> int:
    """Print the failures at the end of the report (first line each); 1 if any, else 0."""
    if failures:
        print(f"\n{len(failures)} failure(s){what} (details above on stderr):")
        for f in failures:
            print(" -", f.splitlines()[0])
    return 1 if failures else 0


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), seconds)``, after a ``gc.collect()``."""
    gc.collect()
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def report_medians(
    label: str, times: dict[str, list[float]], extra: Optional[dict[str, str]] = None
) -> dict[str, float]:
    """Median seconds per contender, and a progress line for them on stderr."""
    med = {k: median(v) for k, v in times.items()}
    reps = min((len(v) for v in times.values()), default=0)
    extra = extra or {}
    cells = ", ".join(f"{k} {fmt_ms(v)} ms{extra.get(k, '')}" for k, v in med.items())
    print(f"  {label}: {reps} reps, {cells}", file=sys.stderr, flush=True)
    return med


def paired_ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over repetitions of ``a``'s time over ``b``'s time in the same repetition.

    A repetition's calls run back to back, so a slow spell of a shared machine weighs on
    both sides of each ratio; the median of these ratios is steadier than the ratio of
    the medians.
    """
    return median([x / y for x, y in zip(times[a], times[b])])


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


def fmt_ratio(value: float, goal: Optional[float] = None) -> str:
    """``1.23x``; with a goal (an upper bound), a miss is marked in bold with a ``!``."""
    text = f"{value:.2f}x"
    if goal is not None and f"{value:.2f}" == f"{goal:.2f}":
        text = f"{value:.3f}x"  # at the goal when rounded: say on which side
    if goal is not None and value > goal:
        return f"**{text}!**"
    return text


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Models


class SyntheticBlock(nn.Module):
    """Eleven graph nodes, most of them repeated functional ops under one parent."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc1(x)
        y = y + 1
        y = y + 1
        y = y + 1
        y = y + 1
        y = torch.relu(y)
        y = torch.relu(y)
        y = torch.relu(y)
        y = self.fc2(y)
        y = self.fc2(y)  # the same Linear called twice
        return x + y


class SyntheticNet(nn.Sequential):
    """A Sequential of stages, each a Sequential of :class:`SyntheticBlock`.

    The default 16 x 45 blocks give 7921 graph nodes (11 per block, plus the input).
    """

    def __init__(self, stages: int = 16, blocks: int = 45, dim: int = 8) -> None:
        super().__init__(
            *[nn.Sequential(*[SyntheticBlock(dim) for _ in range(blocks)]) for _ in range(stages)]
        )


def build_model(name: str) -> nn.Module:
    """A torchvision model (random weights) or ``"synthetic"``, in eval mode."""
    if name == "synthetic":
        model: nn.Module = SyntheticNet()
    else:
        from torchvision.models import get_model

        model = get_model(name, weights=None)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Floor: plain FX tracing


def _torchvision_tracer_defaults() -> tuple[tuple[type, ...], tuple[Any, ...]]:
    """torchvision's default leaf classes and autowrap modules for feature extraction."""
    import torchvision.ops

    leaves = tuple(
        obj for obj in vars(torchvision.ops).values() if isinstance(obj, type) and issubclass(obj, nn.Module)
    )
    return leaves, (math, torchvision.ops)


class FloorTracer(fx.Tracer):
    """A plain ``torch.fx.Tracer`` with torchvision's default leaves and autowraps.

    It builds the same graph as both libraries' naming tracers (so the floor measures the
    same trace), minus any naming.
    """

    def __init__(self) -> None:
        leaves, autowrap = _torchvision_tracer_defaults()
        self._leaves = leaves
        super().__init__(autowrap_modules=autowrap)

    def is_leaf_module(self, m: nn.Module, module_qualname: str) -> bool:
        if isinstance(m, self._leaves):
            return True
        return super().is_leaf_module(m, module_qualname)


def floor_traces(model: nn.Module) -> tuple[fx.Graph, fx.Graph]:
    """The floor of ``get_graph_node_names``: one plain trace in train mode, one in eval mode."""
    was_training = model.training
    try:
        model.train()
        train = FloorTracer().trace(model)
        model.eval()
        eval_ = FloorTracer().trace(model)
    finally:
        model.train(was_training)
    return train, eval_


# ---------------------------------------------------------------------------------------------
# Graphs and names

COMPUTE_OPS = ("call_module", "call_function", "call_method")


def compute_nodes(graph: fx.Graph) -> int:
    """Nodes that run something (``call_module``, ``call_function``, ``call_method``)."""
    return sum(1 for n in graph.nodes if n.op in COMPUTE_OPS)


def count_clones(graph: fx.Graph) -> int:
    """``x.clone()`` / ``torch.clone(x)`` nodes in a graph, and fxtract's clones of containers."""
    return sum(
        1
        for n in graph.nodes
        if (n.op == "call_method" and n.target == "clone")
        or (n.op == "call_function" and (n.target is torch.clone or n.meta.get("fxtract_clone")))
    )


def clone_tree(value: Any) -> Any:
    """A copy of a (nested) structure with every tensor cloned."""
    from torch.utils._pytree import tree_map

    return tree_map(lambda v: v.clone() if isinstance(v, torch.Tensor) else v, value)


def tree_equal(a: Any, b: Any) -> bool:
    """Same structure, and every tensor equal (``torch.equal``), every other leaf ``==``."""
    from torch.utils._pytree import tree_flatten

    leaves_a, spec_a = tree_flatten(a)
    leaves_b, spec_b = tree_flatten(b)
    if spec_a != spec_b:
        return False
    for x, y in zip(leaves_a, leaves_b):
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and torch.equal(x, y)):
                return False
        elif x != y:
            return False
    return True


def pick_names(names: Sequence[str], fractions: Sequence[float]) -> list[str]:
    """The names at these fractions of the order (1.0 is the last name); duplicates dropped."""
    out: list[str] = []
    for f in fractions:
        i = min(len(names) - 1, max(0, round(f * (len(names) - 1))))
        if names[i] not in out:
            out.append(names[i])
    return out
