"""Scaling of `fxtract.extract` over processes: 2 gloo ranks, and 2 `num_shards` jobs, against 1 process.

Every contender runs in forked processes with one thread each (torch already imported, the model
built before the start), released together by a barrier; its time is from the release to the last
process's end, so rendezvous, tracing, the probe forward and the final merge are all counted. Each
repetition runs every contender once in a new (seeded) random order, into a fresh store; ratios are
medians of per-repetition ratios. Throughput ratio against 1 process: the limit is the number of
processes (2.00x), reached only when the machine has 2 idle cores.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from _common import header, markdown_table, median, quiet

CONTENDERS = {"1 process": (1, "none"), "2 ranks (gloo)": (2, "group"), "2 --num-shards jobs": (2, "shards")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(
    rank: int, world: int, mode: str, port: int, job: dict[str, Any], barrier: Any, queue: Any
) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        os.environ.pop(name, None)
    os.environ["OMP_NUM_THREADS"] = "1"
    if mode == "group":
        os.environ.update(
            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
            LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
        )  # fmt: skip
    torch.set_num_threads(1)
    import fxtract

    shards = {"num_shards": world, "shard_index": rank} if mode == "shards" else {}
    barrier.wait()
    t0 = time.monotonic()  # system-wide clock: comparable between the processes
    with quiet():
        store = fxtract.extract(
            job["model"], job["data"], job["out"], progress=False, **job["options"], **shards
        )
    queue.put((t0, time.monotonic(), len(store)))
    queue.close()
    queue.join_thread()
    os._exit(0)


def run(world: int, mode: str, job: dict[str, Any]) -> float:
    """Seconds from the common start to the last process's end."""
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(world), ctx.Queue()
    port = _free_port()
    procs = [
        ctx.Process(target=_child, args=(r, world, mode, port, job, barrier, queue)) for r in range(world)
    ]
    for p in procs:
        p.start()
    answers = [queue.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"a process of {world} ({mode}) exited with {p.exitcode}")
    if mode != "shards" and any(n != job["samples"] for *_, n in answers):
        raise RuntimeError(f"the store holds {answers[0][2]} rows, expected {job['samples']}")
    return max(t1 for _, t1, _ in answers) - min(t0 for t0, _, _ in answers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and repetitions")
    parser.add_argument("--samples", type=int, default=None, help="dataset size (default 512, quick 128)")
    parser.add_argument("--repeat", type=int, default=None, help="repetitions (default 3, quick 1)")
    parser.add_argument("--size", type=int, default=64, help="image side (default 64)")
    parser.add_argument("--results", default=None, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    samples = args.samples or (128 if args.quick else 512)
    reps = args.repeat or (1 if args.quick else 3)
    import torchvision

    torch.set_num_threads(1)
    model = torchvision.models.resnet18(weights=None).eval()
    data = torch.randn(samples, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    options = {"nodes": ["layer3", "layer4"], "pool": "avg", "batch_size": 16, "shard_size": 32}
    root = Path(tempfile.mkdtemp(prefix="fxtract-bench-dist-"))
    times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    rng = random.Random(0)
    try:
        for rep in range(reps):
            order = list(CONTENDERS)
            rng.shuffle(order)
            for name in order:
                world, mode = CONTENDERS[name]
                out = root / f"{rep}-{mode}"
                job = {"model": model, "data": data, "out": out, "options": options, "samples": samples}
                times[name].append(run(world, mode, job))
                shutil.rmtree(out)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = times["1 process"]
    rows = []
    for name, (world, _) in CONTENDERS.items():
        speedup = median([b / t for b, t in zip(base, times[name])])
        rows.append(
            [name, world, f"{samples / median(times[name]):.1f}", f"{speedup:.2f}x", f"{speedup / world:.0%}"]
        )
    text = "\n\n".join(
        [
            header("Distributed extraction: processes of one thread each against one process", args),
            markdown_table(
                ["contender", "processes", "samples/s", "speed-up (limit = processes)", "efficiency"], rows
            ),
            f"resnet18 (random weights) `layer3` + `layer4` avg-pooled, {samples} images {args.size}x{args.size}, "
            f"batch 16, shards of 32 samples, safetensors, {reps} repetition(s), {os.cpu_count()} CPUs; each "
            "time runs from a common start to the last process's end (rendezvous, tracing and merge included).",
        ]
    )
    print(text)
    if args.results:
        Path(args.results).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
