"""Benchmark: the cost of naming a model's nodes, ``get_graph_node_names``.

Measures ``fxtract.get_graph_node_names(model)`` (and with ``naming="torchvision"``)
against the floor, two plain ``torch.fx`` traces (one in train mode, one in eval mode,
as ``get_graph_node_names`` traces both; same leaves and autowraps as torchvision, so
the same graph, without any naming), and against
``torchvision.models.feature_extraction.get_graph_node_names``, on torchvision's
resnet152, vit_h_14 and maxvit_t (random weights) and a synthetic model of about 8000
nodes (stages of blocks, each block with repeated functional ops under one parent,
where torchvision's naming is quadratic).

Goal: fxtract at most 1.3x the floor on every model.

The script also checks that ``naming="torchvision"`` gives exactly torchvision's names
(train and eval lists) on every model.

Run: ``python benchmarks/naming.py [--quick] [--models resnet152,synthetic]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, also when loaded by path
from _common import (
    SyntheticNet,
    build_model,
    floor_traces,
    fmt_ms,
    fmt_ratio,
    header,
    markdown_table,
    paired_ratio,
    quiet,
    report_medians,
    round_robin_after_warmup,
    setup_threads,
    timed,
)

MODELS = ["resnet152", "vit_h_14", "maxvit_t", "synthetic"]
GOAL = 1.3


def bench_model(name: str, args: argparse.Namespace) -> tuple[list[Any], float]:
    import torchvision.models.feature_extraction as tvfe

    import fxtract

    if name == "synthetic" and args.quick:
        model = SyntheticNet(stages=4).eval()  # 1981 nodes: torchvision's naming is quadratic
    else:
        model = build_model(name)

    def floor() -> Any:
        with quiet():
            return floor_traces(model)

    def fx_names() -> Any:
        with quiet():
            return fxtract.get_graph_node_names(model)

    def fx_tv_names() -> Any:
        with quiet():
            return fxtract.get_graph_node_names(model, naming="torchvision")

    def tv_names() -> Any:
        with quiet():
            return tvfe.get_graph_node_names(model)

    contenders = {"floor": floor, "fxtract": fx_names, "fxtract_tv": fx_tv_names, "torchvision": tv_names}
    # The first call of each: the correctness checks, and the warm-up.
    results, first = {}, {}
    for key, fn in contenders.items():
        results[key], first[key] = timed(fn)
    train, eval_ = results["fxtract"]
    if results["fxtract_tv"] != results["torchvision"]:
        raise AssertionError(
            f"{name}: fxtract naming='torchvision' differs from torchvision's names: "
            + _first_difference(results["fxtract_tv"], results["torchvision"])
        )
    if len(set(eval_)) != len(eval_) or len(set(train)) != len(train):
        raise AssertionError(f"{name}: fxtract returned duplicate names")
    nodes = len(eval_)
    # Drop the results (the floor's are two whole graphs) before timing: a heap holding
    # them changes when the garbage collector runs, and not alike for every contender.
    del results, train, eval_

    times = round_robin_after_warmup(contenders, first, args)
    med = report_medians(f"{name}: {nodes} nodes", times)
    return [
        name,
        nodes,
        fmt_ms(med["floor"]),
        fmt_ms(med["fxtract"]),
        fmt_ms(med["torchvision"]),
        fmt_ratio(paired_ratio(times, "fxtract", "floor"), GOAL),
        fmt_ratio(paired_ratio(times, "torchvision", "floor")),
        fmt_ratio(paired_ratio(times, "fxtract_tv", "floor")),
        f"{paired_ratio(times, 'torchvision', 'fxtract'):.1f}x",
    ], paired_ratio(times, "fxtract", "floor")


def _first_difference(a: tuple[list[str], list[str]], b: tuple[list[str], list[str]]) -> str:
    for mode, x, y in (("train", a[0], b[0]), ("eval", a[1], b[1])):
        if x != y:
            for i, (p, q) in enumerate(zip(x, y)):
                if p != q:
                    return f"{mode} list, index {i}: {p!r} != {q!r}"
            return f"{mode} list lengths {len(x)} != {len(y)}"
    return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions, a 2000-node synthetic model")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {MODELS}")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 15, quick 3)")
    parser.add_argument(
        "--budget", type=float, default=None, help="seconds of timing per model (default 180)"
    )
    args = parser.parse_args(argv)
    args.reps = args.reps or (3 if args.quick else 15)
    args.min_reps = 3 if args.quick else 5
    args.budget = args.budget or (20.0 if args.quick else 180.0)
    models = [m.strip() for m in args.models.split(",") if m.strip()]

    setup_threads()
    rows, ratios = [], {}
    for name in models:
        row, ratio = bench_model(name, args)
        rows.append(row)
        ratios[name] = ratio

    print(header("get_graph_node_names: fxtract vs torchvision vs the floor", args))
    print()
    print(
        markdown_table(
            [
                "model",
                "nodes",
                "floor ms",
                "fxtract ms",
                "torchvision ms",
                "fxtract/floor",
                "torchvision/floor",
                'fxtract naming="torchvision"/floor',
                "torchvision/fxtract",
            ],
            rows,
        )
    )
    print()
    print(
        "Floor: two plain torch.fx traces (train, eval). Medians of round-robin repetitions. "
        'fxtract naming="torchvision" returned exactly torchvision\'s names on every model.'
    )
    missed = [m for m, r in ratios.items() if r > GOAL]
    print(
        f"Goal fxtract/floor <= {GOAL}x: "
        + ("met on every model." if not missed else f"MISSED on {', '.join(missed)}.")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
