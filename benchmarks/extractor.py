"""Benchmark: ``create_feature_extractor``, its creation time and its forward time.

(a) Creation time of an extractor of 3 nodes (at 25%, 50% and 100% of the eval
    execution order, each library picking from its own ``get_graph_node_names`` list):
    fxtract vs torchvision vs the floor (two plain ``torch.fx`` traces, train and eval,
    with torchvision's default leaves and autowraps), on resnet152, vit_h_14, maxvit_t
    and a synthetic model of about 8000 nodes.
    Goal: fxtract creation at most 2x the floor.
(b) Forward time, batch 8 at 224x224, eval mode, ``torch.inference_mode()``, on
    resnet50 and vit_b_16: the full model vs an extractor of the same 3 nodes (the last
    node included), fxtract and torchvision; and extractors of one early node only
    (resnet50 ``layer1``, vit_b_16 ``encoder.layers.encoder_layer_1``), as a ratio to the
    full model. Goal: fxtract's extractor with the last node at most 1.02x the model.
    The last node's value is checked against the model's output.
(c) In-place safety: resnet50 with every residual block (``layer1.0`` ...) and every
    BatchNorm requested. Reports the clones fxtract inserted (``clone`` nodes in
    ``extractor.graph``), how many returned tensors equal a forward-hook reference
    (hooks clone what each module returned, before later in-place ops run), and the
    forward time against torchvision's extractor of the same nodes.

Times are medians of round-robin repetitions in one process; ratios are against the
floor / the full model / torchvision measured in the same run.

Run: ``python benchmarks/extractor.py [--quick] [--models resnet152,synthetic] [--parts a,b,c]``.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, also when loaded by path
from _common import (
    SyntheticNet,
    build_model,
    clone_tree,
    count_clones,
    exit_status,
    floor_traces,
    fmt_ms,
    fmt_ratio,
    header,
    markdown_table,
    paired_ratio,
    pick_names,
    quiet,
    report_medians,
    round_robin,
    round_robin_after_warmup,
    setup_threads,
    timed,
    tree_equal,
)

CREATION_MODELS = ["resnet152", "vit_h_14", "maxvit_t", "synthetic"]
FORWARD_MODELS = ["resnet50", "vit_b_16"]
EARLY = {"resnet50": "layer1", "vit_b_16": "encoder.layers.encoder_layer_1"}
FRACTIONS = (0.25, 0.5, 1.0)
CREATION_GOAL = 2.0
FORWARD_GOAL = 1.02

failures: list[str] = []


def _libs() -> tuple[Any, Any, Callable[..., Any], Callable[..., Any]]:
    import torchvision.models.feature_extraction as tvfe

    import fxtract

    return (
        fxtract.get_graph_node_names,
        tvfe.get_graph_node_names,
        fxtract.create_feature_extractor,
        (tvfe.create_feature_extractor),
    )


def _report_failure(what: str) -> str:
    text = f"{what}:\n{traceback.format_exc()}"
    failures.append(text)
    print(f"FAILED {text}", file=sys.stderr, flush=True)
    return "error"


def _names(model: nn.Module) -> tuple[list[str], list[str]]:
    """``(fxtract eval names, torchvision eval names)``."""
    fx_names, tv_names, _, _ = _libs()
    with quiet():
        return fx_names(model)[1], tv_names(model)[1]


# ---------------------------------------------------------------------------------------------
# (a) creation


def bench_creation(name: str, args: argparse.Namespace) -> list[Any]:
    _, _, fx_create, tv_create = _libs()
    model = SyntheticNet(stages=4).eval() if (name == "synthetic" and args.quick) else build_model(name)
    fx_all, tv_all = _names(model)
    fx_nodes, tv_nodes = pick_names(fx_all, FRACTIONS), pick_names(tv_all, FRACTIONS)

    def floor() -> Any:
        with quiet():
            return floor_traces(model)

    def fxtract_() -> Any:
        with quiet():
            return fx_create(model, return_nodes=fx_nodes)

    def torchvision_() -> Any:
        with quiet():
            return tv_create(model, return_nodes=tv_nodes)

    contenders = {"floor": floor, "fxtract": fxtract_, "torchvision": torchvision_}
    first = {}
    for key, fn in list(contenders.items()):
        try:
            first[key] = timed(fn)[1]  # the result is dropped at once (see naming.py)
        except Exception:
            nodes = fx_nodes if key == "fxtract" else tv_nodes
            _report_failure(f"(a) {name}: {key} creation with return_nodes={nodes}")
            contenders.pop(key)
    times = round_robin_after_warmup(contenders, first, args)
    med = report_medians(f"(a) {name}", times)

    def cell(fn: Callable[[], str], *needed: str) -> str:
        return fn() if all(k in med for k in needed) else "error"

    return [
        name,
        len(fx_all),
        ", ".join(f"`{n}`" for n in fx_nodes),
        fmt_ms(med["floor"]),
        cell(lambda: fmt_ms(med["fxtract"]), "fxtract"),
        cell(lambda: fmt_ms(med["torchvision"]), "torchvision"),
        cell(lambda: fmt_ratio(paired_ratio(times, "fxtract", "floor"), CREATION_GOAL), "fxtract"),
        cell(lambda: fmt_ratio(paired_ratio(times, "torchvision", "floor")), "torchvision"),
        cell(lambda: f"{paired_ratio(times, 'torchvision', 'fxtract'):.1f}x", "fxtract", "torchvision"),
    ]


# ---------------------------------------------------------------------------------------------
# (b) forward


def bench_forward(name: str, args: argparse.Namespace) -> list[list[Any]]:
    _, _, fx_create, tv_create = _libs()
    model = build_model(name)
    fx_all, tv_all = _names(model)
    fx_nodes, tv_nodes = pick_names(fx_all, FRACTIONS), pick_names(tv_all, FRACTIONS)
    early = EARLY[name]
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 224, 224)

    extractors: dict[str, nn.Module] = {}
    specs = {
        "fxtract 3 nodes": (fx_create, fx_nodes),
        "torchvision 3 nodes": (tv_create, tv_nodes),
        f"fxtract `{early}`": (fx_create, [early]),
        f"torchvision `{early}`": (tv_create, [early]),
    }
    for label, (create, nodes) in specs.items():
        try:
            with quiet():
                extractors[label] = create(model, return_nodes=nodes).eval()
        except Exception:
            _report_failure(f"(b) {name}: {label} creation with return_nodes={nodes}")

    with torch.inference_mode():
        reference = model(x)
        ex = extractors.get("fxtract 3 nodes")
        if ex is not None:
            try:
                out = ex(x)
                if not torch.equal(out[fx_nodes[-1]], reference):
                    failures.append(
                        f"(b) {name}: fxtract's `{fx_nodes[-1]}` differs from the model's output "
                        f"(max abs diff {(out[fx_nodes[-1]] - reference).abs().max().item():.3g})"
                    )
            except Exception:
                _report_failure(f"(b) {name}: fxtract 3-node extractor forward")
                extractors.pop("fxtract 3 nodes")

        contenders: dict[str, Callable[[], Any]] = {"model": lambda: model(x)}
        for label, extractor in extractors.items():
            contenders[label] = lambda e=extractor: e(x)
        times = round_robin(
            contenders, args.fwd_reps, warmup=1, budget_s=args.fwd_budget, min_reps=args.min_reps
        )
    med = report_medians(f"(b) {name}", times)
    rows = [[name, "full model", "", fmt_ms(med["model"]), "1.00x", ""]]
    for label, (_, nodes) in specs.items():
        if label not in med:
            rows.append([name, label, ", ".join(f"`{n}`" for n in nodes), "error", "error", ""])
            continue
        goal = FORWARD_GOAL if label == "fxtract 3 nodes" else None
        clones = count_clones(extractors[label].graph)
        rows.append(
            [
                name,
                label,
                ", ".join(f"`{n}`" for n in nodes),
                fmt_ms(med[label]),
                fmt_ratio(paired_ratio(times, label, "model"), goal),
                str(clones),
            ]
        )
    return rows


# ---------------------------------------------------------------------------------------------
# (c) in-place safety


def _hook_reference(model: nn.Module, paths: list[str], x: torch.Tensor) -> dict[str, Any]:
    """What each module returned, cloned at once (before later in-place ops change it)."""
    ref: dict[str, Any] = {}
    handles = []
    modules = dict(model.named_modules())
    for path in paths:

        def hook(_m: nn.Module, _i: Any, out: Any, path: str = path) -> None:
            ref[path] = clone_tree(out)

        handles.append(modules[path].register_forward_hook(hook))
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return ref


def bench_inplace(args: argparse.Namespace) -> list[Any]:
    _, _, fx_create, tv_create = _libs()
    name = "resnet50"
    model = build_model(name)
    blocks = [p for p, m in model.named_modules() if p.count(".") == 1 and p.startswith("layer")]
    bns = [p for p, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    nodes = blocks + bns
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 224, 224)

    extractors: dict[str, nn.Module] = {}
    for label, create in (("fxtract", fx_create), ("torchvision", tv_create)):
        try:
            with quiet():
                extractors[label] = create(model, return_nodes=nodes).eval()
        except Exception:
            _report_failure(f"(c) {name}: {label} creation with {len(nodes)} return nodes")
    with torch.inference_mode():
        ref = _hook_reference(model, nodes, x)
        correct: dict[str, str] = {}
        for label, ex in list(extractors.items()):
            try:
                out = ex(x)
            except Exception:
                _report_failure(f"(c) {name}: {label} forward")
                extractors.pop(label)
                continue
            good = [p for p in nodes if tree_equal(out[p], ref[p])]
            correct[label] = f"{len(good)}/{len(nodes)}"
            if label == "fxtract" and len(good) != len(nodes):
                failures.append(
                    f"(c) {name}: fxtract returned values that differ from the hook reference for "
                    f"{sorted(set(nodes) - set(good))}"
                )
        contenders: dict[str, Callable[[], Any]] = {"model": lambda: model(x)}
        for label, ex in extractors.items():
            contenders[label] = lambda e=ex: e(x)
        times = round_robin(
            contenders, args.fwd_reps, warmup=1, budget_s=args.fwd_budget, min_reps=args.min_reps
        )
    med = report_medians(f"(c) {name}", times)

    def cell(label: str, fn: Callable[[], str]) -> str:
        return fn() if label in med else "error"

    return [
        name,
        f"{len(blocks)} blocks + {len(bns)} BatchNorms",
        cell("fxtract", lambda: str(count_clones(extractors["fxtract"].graph))),
        cell("fxtract", lambda: correct["fxtract"]),
        cell("torchvision", lambda: correct["torchvision"]),
        fmt_ms(med["model"]),
        cell("fxtract", lambda: fmt_ms(med["fxtract"])),
        cell("torchvision", lambda: fmt_ms(med["torchvision"])),
        cell("fxtract", lambda: fmt_ratio(paired_ratio(times, "fxtract", "model"))),
        cell("torchvision", lambda: fmt_ratio(paired_ratio(times, "torchvision", "model"))),
        cell(
            "torchvision",
            lambda: fmt_ratio(paired_ratio(times, "fxtract", "torchvision")) if "fxtract" in med else "error",
        ),
    ]


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="few repetitions, batch 2, a 2000-node synthetic model"
    )
    parser.add_argument(
        "--models",
        default=None,
        help=f"comma-separated; (a) from {CREATION_MODELS}, (b) from {FORWARD_MODELS} (default: all)",
    )
    parser.add_argument("--parts", default="a,b,c", help="which parts to run (default a,b,c)")
    parser.add_argument("--batch", type=int, default=None, help="forward batch size (default 8, quick 2)")
    args = parser.parse_args(argv)
    args.reps = 3 if args.quick else 15
    args.fwd_reps = 3 if args.quick else 11
    args.min_reps = 3 if args.quick else 5
    args.budget = 20.0 if args.quick else 120.0
    args.fwd_budget = 15.0 if args.quick else 90.0
    args.batch = args.batch or (2 if args.quick else 8)
    chosen = [m.strip() for m in args.models.split(",")] if args.models else None
    parts = {p.strip() for p in args.parts.split(",")}

    setup_threads()
    tables: list[str] = []
    if "a" in parts:
        rows = [bench_creation(m, args) for m in CREATION_MODELS if chosen is None or m in chosen]
        if rows:
            tables.append(
                "### (a) Creation time, 3 return nodes\n\n"
                + markdown_table(
                    [
                        "model",
                        "nodes",
                        "return nodes (fxtract names)",
                        "floor ms",
                        "fxtract ms",
                        "torchvision ms",
                        "fxtract/floor",
                        "torchvision/floor",
                        "torchvision/fxtract",
                    ],
                    rows,
                )
                + f"\n\nFloor: two plain torch.fx traces (train, eval). Goal fxtract/floor <= {CREATION_GOAL}x "
                "(a miss is in bold)."
            )
    if "b" in parts:
        rows = []
        for m in FORWARD_MODELS:
            if chosen is None or m in chosen:
                rows.extend(bench_forward(m, args))
        if rows:
            tables.append(
                f"### (b) Forward time, batch {args.batch} at 224x224, eval, inference_mode\n\n"
                + markdown_table(["model", "contender", "return nodes", "ms", "/ full model", "clones"], rows)
                + f"\n\nGoal: fxtract's extractor with the last node <= {FORWARD_GOAL}x the full model "
                "(a miss is in bold)."
            )
    if "c" in parts and (chosen is None or "resnet50" in chosen):
        row = bench_inplace(args)
        tables.append(
            f"### (c) In-place safety, resnet50, batch {args.batch}\n\n"
            + markdown_table(
                [
                    "model",
                    "return nodes",
                    "fxtract clones",
                    "fxtract correct",
                    "torchvision correct",
                    "model ms",
                    "fxtract ms",
                    "torchvision ms",
                    "fxtract/model",
                    "torchvision/model",
                    "fxtract/torchvision",
                ],
                [row],
            )
            + "\n\nCorrect: returned tensors equal to a forward-hook reference (cloned when each module returns)."
        )

    print(header("create_feature_extractor: fxtract vs torchvision", args))
    for table in tables:
        print()
        print(table)
    return exit_status(failures, " of fxtract")


if __name__ == "__main__":
    sys.exit(main())
