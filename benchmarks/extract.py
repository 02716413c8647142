"""Extraction to disk: fxtract.extract against the loops it replaces, and the store's reader.

Parts (ratios of medians of paired repetitions, measured round-robin in this one process):
  a  inputs in memory: extract(resnet50, layer4) and extract(layer1) vs the bare model forward
     over the same batches (the limit), no store;
  b  a folder of JPEGs, 2 DataLoader workers: extract vs a bare ImageFolder + DataLoader +
     forward loop that stores nothing (the limit), and vs the hand-written loop (forward hooks,
     .cpu().numpy(), np.save per batch);
  c  peak RSS of an extraction over 1x and 10x the images (in subprocesses), and the store's
     bytes on disk against the bytes of the stored tensors;
  d  a random batch of 256 rows from a 10-shard store vs np.load(mmap_mode="r") on one file.

    python benchmarks/extract.py            # full run (a few minutes on 2 cores)
    python benchmarks/extract.py --quick    # resnet18, fewer samples
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import torch
import torchvision

import fxtract
from _common import (
    fmt_ratio,
    header,
    markdown_table,
    paired_ratio,
    quiet,
    report_medians,
    round_robin,
    setup_threads,
)

SRC = Path(__file__).resolve().parent.parent / "src"


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="resnet18, fewer samples and repetitions")
    p.add_argument("--parts", default="a,b,c,d")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=None, help="image side in pixels (default 128; quick 64)")
    p.add_argument("--reps", type=int, default=None)
    p.add_argument("--batches", type=int, default=None, help="batches per pass in a and b (default 8; quick 2)")
    args = p.parse_args()
    args.model = "resnet18" if args.quick else "resnet50"
    args.size = args.size or (64 if args.quick else 128)
    args.reps = args.reps or (2 if args.quick else 3)
    args.batches = args.batches or (2 if args.quick else 8)
    return args


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None).eval()


def _fresh(root: Path) -> Path:
    out = root / "store"
    shutil.rmtree(out, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------------------------
# a: inputs in memory


def part_a(args: argparse.Namespace, tmp: Path) -> list[list[str]]:
    model = _model(args.model)
    n = args.batch * args.batches
    x = torch.randn(n, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    late = fxtract.create_feature_extractor(model, ["layer4"])
    early = fxtract.create_feature_extractor(model, ["layer1"])

    def bare() -> None:
        with torch.inference_mode():
            for s in range(0, n, args.batch):
                model(x[s : s + args.batch])

    def run(extractor: torch.nn.Module, pool: str) -> None:
        fxtract.extract(extractor, x, _fresh(tmp), batch_size=args.batch, pool=pool, progress=False)

    contenders = {
        "bare forward": bare,
        "extract layer4": lambda: run(late, "none"),
        "extract layer4 avg": lambda: run(late, "avg"),
        "extract layer1 avg": lambda: run(early, "avg"),
    }
    times = round_robin(contenders, args.reps)
    med = report_medians("a", times)
    rows = []
    for name, goal in (
        ("extract layer4", 1 / 0.95),
        ("extract layer4 avg", 1 / 0.95),
        ("extract layer1 avg", 1.0),
    ):
        rate = n / med[name]
        rows.append(
            [f"{args.model} `{name.split()[1]}`{' avg' if 'avg' in name else ''}, batch {args.batch}, {args.size} px",
             f"{rate:.1f}", f"{n / med['bare forward']:.1f}",
             fmt_ratio(1 / paired_ratio(times, name, "bare forward")), f">= {1 / goal:.2f}x" if goal > 1 else "> 1x"]
        )  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------------------
# b: a folder of JPEGs


def make_jpegs(root: Path, n: int, size: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"class{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        # smooth pictures (noise would make JPEG decoding unusually slow): a gradient and a blob
        yy, xx = np.mgrid[0:size, 0:size] / size
        pixels = np.stack([xx, yy, (xx - rng.random()) ** 2 + (yy - rng.random()) ** 2], -1)
        pixels = pixels + rng.normal(0, 0.03, pixels.shape)
        Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(d / f"{i:05d}.jpg", quality=90)


def part_b(args: argparse.Namespace, tmp: Path) -> list[list[str]]:
    from torchvision import datasets, transforms

    from fxtract._data import image_transform

    model = _model(args.model)
    n = args.batch * args.batches
    folder = tmp / "jpegs"
    make_jpegs(folder, n, int(args.size * 1.25))
    resize = int(args.size * 1.14)
    tv_transform = transforms.Compose(
        [transforms.Resize(resize), transforms.CenterCrop(args.size), transforms.ToTensor(),
         transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    )  # fmt: skip
    ours = image_transform(image_size=args.size, resize=resize)
    extractor = fxtract.create_feature_extractor(model, ["layer4"])

    def loader() -> torch.utils.data.DataLoader:
        ds = datasets.ImageFolder(str(folder), transform=tv_transform)
        return torch.utils.data.DataLoader(ds, batch_size=args.batch, num_workers=2)

    def bare() -> None:
        with torch.inference_mode():
            for images, _ in loader():
                model(images)

    def hooks() -> None:  # what users write today
        out = _fresh(tmp)
        out.mkdir()
        kept: list[torch.Tensor] = []
        handle = model.layer4.register_forward_hook(lambda m, i, o: kept.append(o))
        try:
            with torch.no_grad():
                for b, (images, _) in enumerate(loader()):
                    model(images)
                    np.save(out / f"layer4_{b:05d}.npy", kept.pop().cpu().numpy())
        finally:
            handle.remove()

    def ours_run() -> None:
        fxtract.extract(
            extractor,
            folder,
            _fresh(tmp),
            batch_size=args.batch,
            num_workers=2,
            transform=ours,
            progress=False,
        )

    times = round_robin({"bare loop": bare, "hooks + np.save": hooks, "fxtract.extract": ours_run}, args.reps)
    med = report_medians("b", times)
    label = f"{args.model} `layer4`, {n} JPEGs, {args.size} px, batch {args.batch}, 2 workers"
    return [
        [label + ": vs bare loop (limit)", f"{n / med['fxtract.extract']:.1f}", f"{n / med['bare loop']:.1f}",
         fmt_ratio(1 / paired_ratio(times, "fxtract.extract", "bare loop")), ">= 0.90x"],
        [label + ": vs hooks + np.save", f"{n / med['fxtract.extract']:.1f}", f"{n / med['hooks + np.save']:.1f}",
         fmt_ratio(1 / paired_ratio(times, "fxtract.extract", "hooks + np.save")), "-"],
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# c: peak RSS, bytes on disk

RSS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch, torchvision
    import fxtract
    from fxtract._data import image_transform

    def status(field):  # kB, from /proc/self/status
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])

    folder, out, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    import fxtract._extract, fxtract.store  # everything imported before the baseline
    base = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM (the peak) to the current RSS
    store = fxtract.extract(model, folder, out, nodes=["layer3", "layer4"], batch_size=16, num_workers=2,
                            shard_size=64, transform=image_transform(image_size=size, resize=size), progress=False)
    peak = status("VmHWM")
    tensors = sum(store[k].nbytes for k in store.keys())
    print(json.dumps({"base_kib": base, "peak_kib": peak, "rows": len(store), "tensor_bytes": tensors}))
    """
)


def _dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def part_c(args: argparse.Namespace, tmp: Path) -> list[list[str]]:
    n = 64 if args.quick else 128
    size = 64
    results = {}
    for factor in (1, 10):
        folder = tmp / f"rss{factor}"
        make_jpegs(folder, n * factor, 80)
        out = tmp / f"rss{factor}-store"
        env = {**os.environ, "PYTHONPATH": str(SRC), "TQDM_DISABLE": "1"}
        proc = subprocess.run(
            [sys.executable, "-c", RSS_SCRIPT, str(folder), str(out), str(size)],
            capture_output=True, text=True, env=env, check=True,
        )  # fmt: skip
        results[factor] = json.loads(proc.stdout.strip().splitlines()[-1])
        results[factor]["disk"] = _dir_bytes(out)
        results[factor]["shard_bytes"] = sum(
            _dir_bytes(p) if p.is_dir() else p.stat().st_size for p in out.glob("shard-*")
        )
        print(f"  c: {factor}x: {results[factor]}", file=sys.stderr, flush=True)
    one, ten = results[1], results[10]
    big = ten
    return [
        [f"peak RSS, resnet18 `layer3`+`layer4` unpooled, {10 * n} vs {n} JPEGs (main process)",
         f"{ten['peak_kib'] / 1024:.0f} MiB", f"{one['peak_kib'] / 1024:.0f} MiB",
         fmt_ratio(ten["peak_kib"] / one["peak_kib"]), "<= 1.10x"],
        [f"growth of RSS during the extraction (over {one['base_kib'] / 1024:.0f} MiB after imports), "
         f"{10 * n} vs {n} JPEGs", f"{(ten['peak_kib'] - ten['base_kib']) / 1024:.0f} MiB",
         f"{(one['peak_kib'] - one['base_kib']) / 1024:.0f} MiB",
         fmt_ratio((ten["peak_kib"] - ten["base_kib"]) / max(1, one["peak_kib"] - one["base_kib"])), "-"],
        [f"store on disk / stored tensor bytes ({big['rows']} rows; shards only)",
         f"{big['shard_bytes'] / 2**20:.2f} MiB", f"{big['tensor_bytes'] / 2**20:.2f} MiB",
         fmt_ratio(big["shard_bytes"] / big["tensor_bytes"]), "<= 1.01x"],
        [f"store on disk / stored tensor bytes ({big['rows']} rows; with manifest, samples.jsonl)",
         f"{big['disk'] / 2**20:.2f} MiB", f"{big['tensor_bytes'] / 2**20:.2f} MiB",
         fmt_ratio(big["disk"] / big["tensor_bytes"]), "<= 1.01x"],
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# d: random access


def part_d(args: argparse.Namespace, tmp: Path) -> list[list[str]]:
    from fxtract.store._writer import StoreWriter, WriteBatch

    rows, width, shards = (10_000, 512, 10) if not args.quick else (2_000, 256, 10)
    data = np.random.default_rng(0).standard_normal((rows, width), dtype=np.float32)
    np.save(tmp / "one.npy", data)
    stores = {}
    for fmt in ("safetensors", "npy"):
        config = {"model": {}, "nodes": {"f": "f"}, "strategy": "fx", "pool": {}, "dtype": "float32", "amp": False,
                  "preprocessing": None, "data": {}, "format": fmt, "shard_size": rows // shards, "num_samples": rows}  # fmt: skip
        w = StoreWriter(tmp / f"ra-{fmt}", config)
        w.start(w.pending_units())
        for s in range(0, rows, 500):
            w.put(WriteBatch(np.arange(s, s + 500), {"f": data[s : s + 500]}, {"f": "float32"}))
        w.close()
        stores[fmt] = fxtract.open_features(tmp / f"ra-{fmt}")["f"]
    one = np.load(tmp / "one.npy", mmap_mode="r")
    rng = np.random.default_rng(1)
    picks = [rng.choice(rows, 256, replace=False) for _ in range(200)]
    for p in picks[:3]:
        assert np.array_equal(stores["safetensors"][p], one[p]) and np.array_equal(stores["npy"][p], one[p])

    def batch_of(reader):  # 200 random batches of 256 rows
        return lambda: [reader[p] for p in picks]

    times = round_robin(
        {"np.load mmap": batch_of(one), "store safetensors": batch_of(stores["safetensors"]),
         "store npy": batch_of(stores["npy"])}, 5 if not args.quick else 3,
    )  # fmt: skip
    med = report_medians("d", times)
    out = []
    for fmt in ("safetensors", "npy"):
        name = f"store {fmt}"
        out.append(
            [f"random batch of 256 rows x {width} floats, {shards}-shard {fmt} store vs one np.load(mmap) file",
             f"{med[name] / 200 * 1e6:.0f} µs", f"{med['np.load mmap'] / 200 * 1e6:.0f} µs",
             fmt_ratio(paired_ratio(times, name, "np.load mmap")), "-"]
        )  # fmt: skip
    return out


def main() -> int:
    args = _args()
    threads = setup_threads()
    print(header("Extraction to disk (benchmarks/extract.py)", args))
    print(f"\n{threads} threads; the machine may be shared: compare ratios, measured in this one run.\n")
    rows: list[list[str]] = []
    with quiet(), tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for part, fn in (("a", part_a), ("b", part_b), ("c", part_c), ("d", part_d)):
            if part in args.parts.split(","):
                print(f"part {part} ...", file=sys.stderr, flush=True)
                rows.extend(fn(args, tmp))
    print(markdown_table(["model / measure", "fxtract", "peer", "ratio", "goal"], rows))
    print(
        f"\n(ratio: throughput of fxtract over the peer in a-b, fxtract / peer in c-d; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB here)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
