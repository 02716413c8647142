"""Benchmark: how much of the model an early-node extractor still runs (pruning).

For each torchvision classification model of the CI subset, an extractor of one node at
about 25% of the eval execution order (the first node from there on that is a module
path or a tensor op, not a ``getattr`` / ``size`` / ``getitem`` / ``_assert``...), built
by fxtract and by torchvision (the same node: the two libraries' name lists are aligned
by position, since they name the same graph). Plus vit_b_16
``encoder.layers.encoder_layer_1`` explicitly. Reports:

* compute nodes kept (``call_module`` / ``call_function`` / ``call_method`` nodes of
  the eval graph): the full graph (a plain FX trace), fxtract's and torchvision's
  extractors;
* forward time as a ratio to the full model (batch 8 at 224x224, eval,
  ``torch.inference_mode()``; the model and both extractors timed round-robin, medians);
* peak forward memory, fxtract vs torchvision: the peak, over the forward, of the bytes of
  live tensors allocated by that forward, from ``torch.profiler`` memory events
  (``profile_memory=True``: every allocation and free by PyTorch's CPU allocator, in
  time order; running sum, maximum). Weights and the input, allocated before the call,
  are not counted. Deterministic, so one profiled forward per contender.

Goals, vit_b_16 ``encoder.layers.encoder_layer_1``: forward at most 0.25x the full model.
Every row: never more compute nodes than torchvision, peak memory at most 1.05x
torchvision's. A miss is in bold.

Run: ``python benchmarks/pruning.py [--quick] [--models resnet18,vit_b_16]``.
"""

from __future__ import annotations

import argparse
import re
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, also when loaded by path
from _common import (
    build_model,
    clone_tree,
    compute_nodes,
    count_clones,
    exit_status,
    floor_traces,
    fmt_ms,
    fmt_ratio,
    header,
    markdown_table,
    paired_ratio,
    quiet,
    report_medians,
    round_robin,
    setup_threads,
    tree_equal,
)

MODELS = [
    "resnet18",
    "resnet50",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "regnet_y_400mf",
    "densenet121",
    "convnext_tiny",
    "swin_t",
    "maxvit_t",
    "vit_b_16",
    "vit_l_16",
]
FRACTION = 0.25
EXPLICIT = {"vit_b_16": "encoder.layers.encoder_layer_1"}
TIME_GOAL = 0.25
MEMORY_GOAL = 1.05
# Ops whose result is not an activation (sizes, attribute reads, checks, indexing).
NOT_ACTIVATIONS = {
    "getattr",
    "size",
    "dim",
    "eq",
    "ne",
    "_assert",
    "getitem",
    "floordiv",
    "mod",
    "truediv",
    "sub",
    "mul",
    "len",
    "shape",
    "numel",
    "int",
    "float",
    "_set_grad_enabled",
    "set_grad_enabled",
}

failures: list[str] = []


def _report_failure(what: str) -> None:
    text = f"{what}:\n{traceback.format_exc()}"
    failures.append(text)
    print(f"FAILED {text}", file=sys.stderr, flush=True)


def _op_base(name: str) -> str:
    return re.sub(r"_[0-9]+$", "", name.rsplit(".", 1)[-1])


def pick_index(names: list[str], module_paths: set[str], fraction: float) -> int:
    """Index of the first name at or after ``fraction`` of the order that is an activation."""
    start = round(fraction * (len(names) - 1))
    for i in range(start, len(names)):
        if names[i] in module_paths or _op_base(names[i]) not in NOT_ACTIVATIONS:
            return i
    return len(names) - 1


def peak_forward_bytes(fn: Callable[[], Any]) -> int:
    """Peak of live tensor bytes allocated during ``fn()``, from the profiler's memory events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    del out
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def _hook_value(model: nn.Module, path: str, x: torch.Tensor) -> Any:
    """What module ``path`` returned, cloned at once (before later in-place ops)."""
    box: list[Any] = []
    handle = dict(model.named_modules())[path].register_forward_hook(
        lambda m, i, o: box.append(clone_tree(o))
    )
    try:
        model(x)
    finally:
        handle.remove()
    return box[0]


def bench_node(
    model: nn.Module,
    label: str,
    fx_node: str,
    tv_node: str,
    full_nodes: int,
    x: torch.Tensor,
    args: argparse.Namespace,
    time_goal: Optional[float] = None,
) -> list[Any]:
    import torchvision.models.feature_extraction as tvfe

    import fxtract

    extractors: dict[str, nn.Module] = {}
    for lib, create, node in (
        ("fxtract", fxtract.create_feature_extractor, fx_node),
        ("torchvision", tvfe.create_feature_extractor, tv_node),
    ):
        try:
            with quiet():
                extractors[lib] = create(model, return_nodes=[node]).eval()
        except Exception:
            _report_failure(f"{label}: {lib} create_feature_extractor(return_nodes=[{node!r}])")

    with torch.inference_mode():
        outputs: dict[str, Any] = {}
        for lib, ex in list(extractors.items()):
            try:
                outputs[lib] = ex(x)[fx_node if lib == "fxtract" else tv_node]
            except Exception:
                _report_failure(f"{label}: {lib} extractor forward")
                extractors.pop(lib)
        if "fxtract" in outputs and fx_node in dict(model.named_modules()):
            ref = _hook_value(model, fx_node, x)
            if not tree_equal(outputs["fxtract"], ref):
                failures.append(f"{label}: fxtract's `{fx_node}` differs from the forward-hook reference")
        del outputs

        contenders: dict[str, Callable[[], Any]] = {"model": lambda: model(x)}
        for lib, ex in extractors.items():
            contenders[lib] = lambda e=ex: e(x)
        times = round_robin(contenders, args.reps, warmup=1, budget_s=args.budget, min_reps=args.min_reps)
        peaks = {lib: peak_forward_bytes(fn) for lib, fn in contenders.items()}
    med = report_medians(label, times, {k: f" / {p / 2**20:.0f} MiB" for k, p in peaks.items()})

    def get(lib: str, fn: Callable[[], Any]) -> str:
        return str(fn()) if lib in extractors else "error"

    fx_kept = compute_nodes(extractors["fxtract"].graph) if "fxtract" in extractors else None
    tv_kept = compute_nodes(extractors["torchvision"].graph) if "torchvision" in extractors else None
    fx_kept_cell = get("fxtract", lambda: fx_kept)
    if fx_kept is not None and tv_kept is not None and fx_kept > tv_kept:
        fx_kept_cell = f"**{fx_kept}!**"
    both = "fxtract" in extractors and "torchvision" in extractors
    return [
        label,
        f"`{fx_node}`" + ("" if fx_node == tv_node else f" (tv: `{tv_node}`)"),
        full_nodes,
        fx_kept_cell,
        get("torchvision", lambda: tv_kept),
        get("fxtract", lambda: count_clones(extractors["fxtract"].graph)),
        fmt_ms(med["model"]),
        get("fxtract", lambda: fmt_ratio(paired_ratio(times, "fxtract", "model"), time_goal)),
        get("torchvision", lambda: fmt_ratio(paired_ratio(times, "torchvision", "model"))),
        f"{peaks['model'] / 2**20:.0f}",
        get("fxtract", lambda: f"{peaks['fxtract'] / 2**20:.1f}"),
        get("torchvision", lambda: f"{peaks['torchvision'] / 2**20:.1f}"),
        fmt_ratio(peaks["fxtract"] / peaks["torchvision"], MEMORY_GOAL) if both else "error",
    ]


def bench_model(name: str, args: argparse.Namespace) -> list[list[Any]]:
    import torchvision.models.feature_extraction as tvfe

    import fxtract

    model = build_model(name)
    with quiet():
        fx_names = fxtract.get_graph_node_names(model)[1]
        tv_names = tvfe.get_graph_node_names(model)[1]
        full_nodes = compute_nodes(floor_traces(model)[1])
    if len(fx_names) != len(tv_names):
        raise AssertionError(f"{name}: {len(fx_names)} fxtract names but {len(tv_names)} torchvision names")
    paths = {p for p, _ in model.named_modules()}
    i = pick_index(fx_names, paths, FRACTION)
    batch = args.batch
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 224, 224)
    label = f"{name} (b{batch})" if batch != 8 else name
    rows = [bench_node(model, label, fx_names[i], tv_names[i], full_nodes, x, args)]
    if name in EXPLICIT:
        node = EXPLICIT[name]
        rows.append(bench_node(model, label, node, node, full_nodes, x, args, time_goal=TIME_GOAL))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 2, few repetitions")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {MODELS}")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 8, quick 2)")
    args = parser.parse_args(argv)
    args.reps = 3 if args.quick else 9
    args.min_reps = 3 if args.quick else 5
    args.budget = 10.0 if args.quick else 40.0
    args.batch = args.batch or (2 if args.quick else 8)
    models = [m.strip() for m in args.models.split(",") if m.strip()]

    setup_threads()
    rows: list[list[Any]] = []
    for name in models:
        try:
            rows.extend(bench_model(name, args))
        except Exception:
            _report_failure(f"{name}: benchmark")

    print(header("Pruning: an extractor of one early node, fxtract vs torchvision", args))
    print()
    print(
        markdown_table(
            [
                "model",
                "node",
                "nodes full",
                "nodes fxtract",
                "nodes torchvision",
                "fxtract clones",
                "full fwd ms",
                "fxtract fwd/full",
                "torchvision fwd/full",
                "full peak MiB",
                "fxtract peak MiB",
                "torchvision peak MiB",
                "fxtract/torchvision peak",
            ],
            rows,
        )
    )
    print()
    print(
        f"Node: first activation at {FRACTION:.0%} of the eval order (and vit_b_16 "
        f"`{EXPLICIT['vit_b_16']}`, goal fwd/full <= {TIME_GOAL}x). Nodes: call_module/call_function/"
        "call_method nodes of the eval graph. Peak: live tensor bytes allocated during one forward "
        f"(torch.profiler memory events); goal fxtract/torchvision <= {MEMORY_GOAL}x. Batch {args.batch}, "
        "224x224, eval, inference_mode; times are medians of round-robin repetitions."
    )
    return exit_status(failures)


if __name__ == "__main__":
    sys.exit(main())
