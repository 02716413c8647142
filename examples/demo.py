"""fxtract's main job, offline: extract a dataset's features to disk, then train a linear probe on them.

Run with ``make demo`` (it builds .venv first). Random weights and synthetic images: nothing is
downloaded. Takes well under a minute on a laptop CPU.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

import fxtract


def section(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 70 - len(title)), flush=True)


def make_images(root: Path, per_class: int = 48, size: int = 64) -> None:
    """Two classes of noisy pictures: horizontal warm stripes and vertical cool stripes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for label, name in enumerate(("stripes_h", "stripes_v")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            period = rng.uniform(6, 14)
            wave = np.sin(2 * np.pi * (yy if label == 0 else xx) / period + rng.uniform(0, 6.3))
            color = np.array([0.8, 0.4, 0.2]) if label == 0 else np.array([0.2, 0.5, 0.8])
            pixels = 0.5 + 0.3 * wave[..., None] * color + rng.normal(0, 0.15, (size, size, 3))
            Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(root / name / f"{i:03d}.png")


def probe_accuracy(features: np.ndarray, labels: np.ndarray) -> tuple[float, int, int]:
    """Logistic regression on half the samples (full-batch gradient descent), accuracy on the rest."""
    rng = np.random.default_rng(0)
    order = rng.permutation(len(labels))
    train, test = order[: len(order) // 2], order[len(order) // 2 :]
    x = torch.from_numpy(features).float()
    x = (x - x[train].mean(0)) / (x[train].std(0) + 1e-6)
    y = torch.from_numpy(labels)
    probe = torch.nn.Linear(x.shape[1], 2)
    opt = torch.optim.Adam(probe.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(probe(x[train]), y[train]).backward()
        opt.step()
    with torch.no_grad():
        accuracy = (probe(x[test]).argmax(1) == y[test]).float().mean().item()
    return accuracy, len(train), len(test)


def main() -> None:
    torch.manual_seed(0)
    cli = ["fxtract"] if shutil.which("fxtract") else [sys.executable, "-m", "fxtract"]
    work = Path(tempfile.mkdtemp(prefix="fxtract-demo-"))
    images, store_dir = work / "images", work / "features"

    section("Node names of torchvision resnet18 (eval graph)")
    _, names = fxtract.get_graph_node_names(torchvision.models.resnet18(weights=None))
    print(f"{len(names)} nodes: " + ", ".join(names[:10]) + ", ..., " + ", ".join(names[-3:]))

    section("A folder of synthetic images in two classes")
    make_images(images)
    print(f"{images}: {sum(1 for _ in images.rglob('*.png'))} PNGs in stripes_h/ and stripes_v/")

    command = [
        *cli, "extract", "torchvision:resnet18", str(images),
        "--nodes", "layer3", "--nodes", "layer4", "--pool", "avg",
        "--out", str(store_dir), "--image-size", "64", "--batch-size", "32", "--shard-size", "32", "--num-workers", "2",
    ]  # fmt: skip
    section("fxtract extract torchvision:resnet18 images/ --nodes layer3 --nodes layer4 --pool avg ...")
    start = time.perf_counter()
    subprocess.run(command, check=True)
    print(f"took {time.perf_counter() - start:.1f} s (model build and worker start included)")
    section("fxtract info features/")
    subprocess.run([*cli, "info", str(store_dir)], check=True)

    section("A linear probe on the stored layer4 features")
    store = fxtract.open_features(store_dir)
    for key in store:  # its keys, in the extractor's order
        print(f"{key}: {store[key].shape} {store[key].dtype}, {len(store.manifest['shards'])} shard(s)")
    accuracy, n_train, n_test = probe_accuracy(store["layer4"].numpy(), store.labels)
    print(f"logistic regression on layer4 (random weights): {accuracy:.0%} accuracy on {n_test} held-out "
          f"images ({n_train} to train, classes {store.classes})")  # fmt: skip

    section("Rerun the same command: committed shards are skipped")
    start = time.perf_counter()
    subprocess.run(command, check=True)
    print(f"took {time.perf_counter() - start:.1f} s")

    section("Open the store yourself")
    print(
        "import fxtract\n"
        f"store = fxtract.open_features({str(store_dir)!r})\n"
        "x = store['layer4'][:]            # numpy, memory-mapped shards; store['layer4'].torch() for torch\n"
        "y = store.labels                  # int64 per row; store.sources: the file of each row\n"
        "for batch in store['layer3'].iter_batches(256): ...   # bounded memory"
    )


if __name__ == "__main__":
    main()
