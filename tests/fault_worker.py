"""A child process for tests/test_faults.py: one ``fxtract.extract`` run, with a fault injected.

``python -m tests.fault_worker OUT FAULT [ARGS...]``:

* ``none``: run to the end;
* ``kill TARGET PHASE K``: SIGKILL itself at the K-th atomic write of TARGET (``shard``,
  ``manifest``, ``part``, ``samples``), ``before`` it starts, ``during`` it (the temporary
  file half written) or ``after`` it (renamed, the directory not yet synced);
* ``fsize BYTES``: run under ``RLIMIT_FSIZE`` (a full disk: writes past BYTES fail with EFBIG);
* ``slow SECONDS``: sleep after each shard (a reader runs meanwhile);
* ``split INDEX``: this job does units ``u % 2 == INDEX`` of two.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import time

import torch

from fxtract.store import _files, _writer

N, SHARD = 40, 8


def build():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3))
    data = torch.randn(N, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    return model.eval(), data


def run(out: str, **kw) -> None:
    import fxtract

    model, data = build()
    fxtract.extract(model, data, out, nodes=["1", "2"], pool="avg", shard_size=SHARD, progress=False, **kw)


def _target(path) -> str:
    name = os.path.basename(str(path))
    if name.startswith("shard-"):
        return "shard"
    if name == "manifest.json":
        return "manifest"
    if name == "samples.jsonl":
        return "samples"
    return "part"


def _inject_kill(target: str, phase: str, k: int) -> None:
    original = _files.write_atomic
    seen = [0]

    def write_atomic(path, write):
        if _target(path) == target:
            seen[0] += 1
            if seen[0] == k:
                if phase == "before":
                    os.kill(os.getpid(), signal.SIGKILL)
                if phase == "during":
                    tmp = _files.tmp_name(path)
                    write(tmp)
                    if tmp.is_file():
                        with open(tmp, "r+b") as f:
                            f.truncate(max(1, tmp.stat().st_size // 2))
                    os.kill(os.getpid(), signal.SIGKILL)
                original(path, write)
                os.kill(os.getpid(), signal.SIGKILL)
        return original(path, write)

    _files.write_atomic = write_atomic
    _writer.write_atomic = write_atomic


def _inject_slow(seconds: float) -> None:
    original = _files.write_shard

    def write_shard(*args, **kwargs):
        out = original(*args, **kwargs)
        time.sleep(seconds)
        return out

    _files.write_shard = write_shard
    _writer.write_shard = write_shard


def main(argv: list[str]) -> int:
    out, fault, *args = argv
    kw = {}
    if fault == "kill":
        _inject_kill(args[0], args[1], int(args[2]))
    elif fault == "fsize":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(args[0]), resource.RLIM_INFINITY))
    elif fault == "slow":
        _inject_slow(float(args[0]))
    elif fault == "split":
        kw = {"num_shards": 2, "shard_index": int(args[0])}
    from fxtract import FxtractError

    try:
        run(out, **kw)
    except FxtractError as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
