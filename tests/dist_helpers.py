"""Run a function on several gloo ranks on 127.0.0.1 (forked processes: torch is already imported)."""

from __future__ import annotations

import multiprocessing
import os
import socket
import traceback
from typing import Any, Callable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_env(rank: int, world: int, port: int) -> dict[str, str]:
    return {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "RANK": str(rank),
        "WORLD_SIZE": str(world),
        "LOCAL_RANK": str(rank),
        "LOCAL_WORLD_SIZE": str(world),
        "OMP_NUM_THREADS": "1",
        "FXTRACT_DIST_TIMEOUT": "60",
    }


def _child(
    func: Callable[..., Any], rank: int, world: int, port: int, args: tuple, queue: Any, group: bool
) -> None:
    if group:
        os.environ.update(torchrun_env(rank, world, port))
    else:  # independent jobs: no launcher at all
        os.environ["OMP_NUM_THREADS"] = "1"
        for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "SLURM_PROCID"):
            os.environ.pop(name, None)
    try:
        import torch

        torch.set_num_threads(1)
        result = func(rank, *args)
    except BaseException as e:
        _report(queue, (rank, "error", (type(e).__name__, str(e), traceback.format_exc())), 1)
    _report(queue, (rank, "ok", result), 0)


def _report(queue: Any, answer: tuple, status: int) -> None:
    queue.put(answer)
    queue.close()
    queue.join_thread()  # flushed before the hard exit
    os._exit(status)


def run_ranks(
    func: Callable[..., Any], world: int = 2, args: tuple = (), *, timeout: float = 120, group: bool = True
) -> dict[int, tuple[str, Any]]:
    """``func(rank, *args)`` on ``world`` forked ranks; ``{rank: ("ok", result) | ("error", (type, msg, tb))}``.

    ``group``: torchrun's variables for a world of ``world`` ranks; else none (independent jobs).
    A rank that dies without reporting (killed) answers ``("killed", None)``.
    """
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(target=_child, args=(func, r, world, port, args, queue, group)) for r in range(world)
    ]
    for p in procs:
        p.start()
    answers: dict[int, tuple[str, Any]] = {}
    for p in procs:
        p.join(timeout)
    for p in procs:
        if p.is_alive():  # a hang is a failure of the code under test: do not leave it behind
            p.kill()
            p.join()
    while not queue.empty():
        rank, status, value = queue.get()
        answers[rank] = (status, value)
    hung = [r for r, p in enumerate(procs) if p.exitcode is not None and p.exitcode < 0 and r not in answers]
    answers.update({r: ("killed", None) for r in hung})
    return answers
