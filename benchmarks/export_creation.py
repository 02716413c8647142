"""How long the "export" strategy takes to build an extractor, against FX and a forward pass.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/export_creation.py [--model resnet50]``.
Prints the median of ``--repeat`` runs (after one warm-up run of each step) and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torchvision

from fxtract._export import create_export_extractor, trace_export


def median_time(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: first-call costs (imports, dispatcher caches) are not what we compare
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()

    torch.manual_seed(0)
    model = getattr(torchvision.models, opts.model)(weights=None).eval()
    x = torch.randn(opts.batch, 3, opts.size, opts.size)
    nodes = {"layer1": "c2", "layer2": "c3", "layer3": "c4", "layer4": "c5"}
    if not opts.model.startswith("resnet"):
        nodes = {}

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def export_eval() -> None:
        torch.export.export(model, (x,), strict=False)

    timings = {
        "forward (no_grad)": median_time(forward, opts.repeat),
        "torch.fx.symbolic_trace": median_time(lambda: torch.fx.symbolic_trace(model), opts.repeat),
        "torch.export.export (eval, static)": median_time(export_eval, opts.repeat),
        "trace_export (train+eval, names)": median_time(lambda: trace_export(model, x), opts.repeat),
        "create_export_extractor": median_time(
            lambda: create_export_extractor(model, nodes, nodes, x), opts.repeat
        ),
    }
    fx_time = timings["torch.fx.symbolic_trace"]
    fwd_time = timings["forward (no_grad)"]
    print(
        f"{opts.model}, input {tuple(x.shape)}, {torch.get_num_threads()} thread(s), median of {opts.repeat}"
    )
    print(f"{'step':38s} {'seconds':>9s} {'x FX trace':>11s} {'x forward':>10s}")
    for name, t in timings.items():
        print(f"{name:38s} {t:9.3f} {t / fx_time:11.1f} {t / fwd_time:10.1f}")


if __name__ == "__main__":
    main()
