"""fxtract's main job, offline: list a model's nodes, inspect them, extract activations.

Run with ``make demo`` (it builds .venv first). Random weights: nothing is downloaded.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings

import torch
import torchvision

import fxtract


def section(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 70 - len(title)))


def main() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()

    section("Node names of torchvision resnet18 (eval graph)")
    _, names = fxtract.get_graph_node_names(model)
    print(f"{len(names)} nodes: " + ", ".join(names[:12]) + ", ...")

    section("Extract two nodes")
    extractor = fxtract.create_feature_extractor(model, {"layer1": "feat1", "layer3.1.bn2": "feat2"})
    out = extractor(torch.randn(1, 3, 224, 224))
    for key, value in out.items():
        print(f"{key}: {tuple(value.shape)}")
    print(
        f"kept {extractor.prune_stats['eval']['compute_after']} of {extractor.prune_stats['eval']['compute_before']}"
        " compute nodes; in-place-safety clones:",
        extractor.num_clones["eval"],
    )

    section("A model FX cannot trace: data-dependent control flow")

    class Gate(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Linear(8, 8)
            self.b = torch.nn.Linear(8, 8)

        def forward(self, x):
            h = self.a(x)
            if h.sum() > 0:  # FX cannot branch on a traced value
                h = h * 2
            return self.b(h)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gate = fxtract.create_feature_extractor(Gate(), ["a", "b"])
    print(f"strategy used: {gate.strategy}  ({len(caught)} warning explaining why)")
    print({k: tuple(v.shape) for k, v in gate(torch.randn(2, 8)).items()})

    cli = [sys.executable, "-m", "fxtract"]
    if shutil.which("fxtract"):
        cli = ["fxtract"]
    section("fxtract nodes torchvision:resnet18 --tree --depth 2")
    subprocess.run([*cli, "nodes", "torchvision:resnet18", "--tree", "--depth", "2"], check=True)
    section("fxtract describe torchvision:resnet18 --nodes 'layer*.0.conv*' --nodes fc")
    subprocess.run(
        [*cli, "describe", "torchvision:resnet18", "--nodes", "layer*.0.conv*", "--nodes", "fc"], check=True
    )


if __name__ == "__main__":
    main()
