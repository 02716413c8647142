"""Strategy "hooks" stops the forward early: an early layer costs a fraction of a full forward.

Times, round-robin, a plain forward of the model and hooks extractors of a few layers, and
prints each extractor's median time as a ratio of the full forward's.

    python benchmarks/hooks_early_stop.py [--model resnet50] [--batch 8] [--size 224] [--reps 7]
"""

from __future__ import annotations

import argparse

import torch

from _common import build_model, fmt_ms, fmt_ratio, header, markdown_table, median, round_robin, setup_threads
from fxtract._hooks import HookFeatureExtractor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--layers", nargs="+", default=["layer1", "layer2", "layer3", "fc"])
    args = parser.parse_args()

    setup_threads()
    torch.manual_seed(0)
    model = build_model(args.model)
    x = torch.randn(args.batch, 3, args.size, args.size)
    contenders = {"full forward": lambda: model(x)}
    for layer in args.layers:
        extractor = HookFeatureExtractor(model, {layer: "out"}, {layer: "out"})
        contenders[f"hooks {layer}"] = lambda e=extractor: e(x)
    with torch.inference_mode():
        times = round_robin(contenders, args.reps)

    full = median(times["full forward"])
    rows = [[name, fmt_ms(median(t)), fmt_ratio(median(t) / full)] for name, t in times.items()]
    print(header(f"hooks early stop: {args.model}, batch {args.batch}, {args.size}x{args.size}"))
    print()
    print(markdown_table(["contender", "median ms", "vs full forward"], rows))


if __name__ == "__main__":
    main()
