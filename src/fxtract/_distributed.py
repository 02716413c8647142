"""Extraction over several processes and machines: torchrun, SLURM's srun, independent jobs.

The store's data plane is the filesystem: the dataset is cut into deterministic work units (unit ``u`` =
dataset indices ``[u*S, (u+1)*S)``), each committed atomically as one shard file, and "which units are
done" is read from the directory. So processes only need to agree on *who does which missing unit* and to
hear about each other's failures; they never exchange features.

Three layers:

- :func:`rank_plan` (pure, in ``_rank_plan``): who am I, from torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/
  ``LOCAL_WORLD_SIZE``, else SLURM's ``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID`` inside an srun
  step, plus ``num_shards``/``shard_index`` for independent jobs (job arrays) that never rendezvous.
- :func:`shard_units` / :func:`split_units` (pure, in ``_rank_plan``): the partition. Unit ``u`` belongs to shard
  ``u % num_shards`` (fixed, so jobs that never talk agree); inside a shard the *missing* units, as rank 0
  saw them, are dealt round-robin to the ranks. No padding, no duplicates (unlike ``DistributedSampler``),
  and a rerun with another world size does only what is missing.
- :class:`Session`: the process group (``nccl`` for CUDA devices, else ``gloo``; the control messages
  always go over gloo), one device per local rank, threads per process, and the failure protocol. Every
  collective a session makes is a *round*: an all-reduce of ``[failures, samples]`` that every rank
  reaches at the same point of the same sequence (one per unit, padded to the longest rank's count). A
  rank that raises joins the next round with a failure flag, so the others leave their loop one unit
  later; then the messages are gathered and every rank raises the failing rank's message instead of
  hanging. A rank that is killed breaks the connection: gloo raises at once and so do the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import os
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Callable, Optional

from ._rank_plan import DistributedError, RankPlan, first_host, rank_plan, shard_units, split_units

__all__ = [
    "DistributedError",
    "IncompleteStoreError",
    "PeerLostError",
    "RankFailedError",
    "RankPlan",
    "Session",
    "first_host",
    "merge_jobs",
    "rank_plan",
    "session",
    "shard_units",
    "split_units",
    "with_session",
]

# Seconds a rank waits for the others (rendezvous, each round) before it gives up.
DEFAULT_TIMEOUT = 1800.0


class RankFailedError(DistributedError):
    """Another rank failed; the message is that rank's."""

    def __init__(self, message: str, *, failures: Sequence[tuple[int, str]] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)


# ---------------------------------------------------------------------------------------------
# The session: process group, device, threads, failure protocol


class Session:
    """One process's part of an extraction; see :func:`session` (which makes and closes it)."""

    def __init__(self, plan: RankPlan, *, device: Any = "cpu", timeout: Optional[float] = None) -> None:
        self.plan = plan
        self.device = assign_device(device, plan)
        self.timeout = timeout if timeout is not None else _env_timeout()
        self._group: Any = None  # the gloo group the rounds go over
        self._owns_group = False
        self._pending: Any = None  # (work, tensor) of the round in flight
        self._rounds_left: Optional[int] = None
        self._units: list[int] = []
        self.missing: list[int] = []  # the units this launch writes, all ranks together
        self.todo = 0  # their samples
        self._sizes: list[int] = []  # samples of each unit of this rank still open
        self._in_unit = 0
        self._opened = False
        self._done = False
        self._closed = False

    # -- lifecycle

    def open(self) -> Session:
        """Join the process group (a no-op for one process)."""
        configure_threads(self.plan)
        if not self.plan.grouped:
            self._opened = True
            return self
        import torch.distributed as dist

        for name, value in self.plan.env.items():
            os.environ.setdefault(name, value)
        timeout = datetime.timedelta(seconds=self.timeout)
        if dist.is_initialized():  # the caller's own group: use it, leave it open
            if dist.get_world_size() != self.plan.world_size or dist.get_rank() != self.plan.rank:
                raise DistributedError(
                    f"the process group already initialised is rank {dist.get_rank()} of "
                    f"{dist.get_world_size()}, but the environment says {self.plan}."
                )
        else:
            backend = "nccl" if str(self.device).startswith("cuda") and dist.is_nccl_available() else "gloo"
            try:
                dist.init_process_group(
                    backend,
                    init_method="env://",
                    rank=self.plan.rank,
                    world_size=self.plan.world_size,
                    timeout=timeout,
                )
            except (RuntimeError, ValueError) as e:  # torch's DistStoreError / DistNetworkError included
                where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
                raise DistributedError(
                    f"{self.plan} could not join the other processes at {where} ({backend}): "
                    f"{' '.join(str(e).split())[:300]}. Check that all {self.plan.world_size} were started "
                    "and that MASTER_ADDR/MASTER_PORT are reachable (FXTRACT_DIST_TIMEOUT sets how long to wait)."
                ) from None
            self._owns_group = True
        # Control messages are tiny and must not wait on CUDA streams: always over gloo.
        self._group = (
            None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo", timeout=timeout)
        )
        self._opened = True
        return self

    def close(self) -> None:
        """Leave the process group if this session made it."""
        if self._closed:
            return
        self._closed = True
        if not self.plan.grouped:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            return
        if self._owns_group:
            dist.destroy_process_group()  # the gloo side group with it
        elif self._group is not None:
            dist.destroy_process_group(self._group)  # ours, in the caller's group

    # -- the partition

    @property
    def writer(self) -> int:
        """The store writer (partial manifest) of this launch: its shard (ranks share their job's part)."""
        return self.plan.shard_index

    @property
    def writers(self) -> int:
        return self.plan.num_shards

    def in_turn(self, func: Callable[[], Any]) -> Any:
        """``func()`` on each rank in turn, rank 0 first (opening the store: only one creates or clears it)."""
        if not self.plan.grouped:
            return func()
        result = None
        for rank in range(self.plan.world_size):
            if rank == self.plan.rank:
                result = func()
            self._round(0)
        return result

    def assign(
        self,
        num_units: int,
        committed: Callable[[], Any],
        *,
        shard_size: Optional[int] = None,
        num_samples: Optional[int] = None,
    ) -> list[int]:
        """The units this process writes: its shard's units that are not committed, dealt to the ranks.

        Args:
            num_units: Work units of the dataset (``ceil(N / S)``).
            committed: Reads the committed units from the store's directory (called on rank 0 only, so
                that every rank partitions the same list even while other jobs commit).
            shard_size, num_samples: The unit size S and the dataset size N, for :meth:`batch_done` and
                :attr:`todo` (the samples of all ranks' units).

        Returns:
            This rank's units, ascending.
        """
        mine = shard_units(num_units, self.plan.num_shards, self.plan.shard_index)
        missing: list[int] = []
        if self.plan.is_main:
            done = set(committed())
            missing = [u for u in mine if u not in done]
        if self.plan.grouped:
            self._round(0)  # everybody is here and healthy before the data collective
            missing = self._broadcast(missing)
        self.missing = missing
        self._units = split_units(missing, self.plan.world_size, self.plan.rank)
        # One round per unit of the busiest rank, then the final one.
        self._rounds_left = len(split_units(missing, self.plan.world_size, 0))
        if shard_size is not None and num_samples is not None:
            self._sizes = [min(shard_size, num_samples - u * shard_size) for u in self._units]
            self.todo = sum(min(shard_size, num_samples - u * shard_size) for u in missing)
        return self._units

    def batch_done(self, samples: int) -> int:
        """Report a batch handed to the writer (batches never span units); returns the samples the
        other ranks finished meanwhile (for a progress bar of global counts, on rank 0).

        At the end of each unit this is :meth:`unit_done`: a round, where another rank's failure
        raises :class:`RankFailedError`.
        """
        self._in_unit += samples
        if not self._sizes or self._in_unit < self._sizes[0]:
            return 0
        size = self._sizes.pop(0)
        self._in_unit -= size
        return self.unit_done(size)

    # -- rounds

    def unit_done(self, samples: int) -> int:
        """Report a unit handed to the writer; returns the samples the *other* ranks finished since.

        Call it once per assigned unit, from the loop that feeds the writer. Raises
        :class:`RankFailedError` when another rank failed (this rank then stops after this unit).
        """
        if not self.plan.grouped or self._rounds_left is None or self._rounds_left <= 0:
            return 0
        others = self._wait_pending()
        self._rounds_left -= 1
        self._start_round(0, samples)
        return others

    def finish(self) -> int:
        """After this rank's last unit: pads its rounds to the busiest rank's (every rank runs the same
        sequence of collectives) and waits for every rank; returns the others' last samples."""
        if not self.plan.grouped:
            return 0
        others = self._wait_pending()
        while self._rounds_left:
            self._rounds_left -= 1
            others += self._round(0)
        self._rounds_left = 0
        return others + self._round(0)

    def run_on_main(self, func: Callable[[], Any]) -> Any:
        """``func()`` on rank 0 once every rank is here (the merge); every rank returns its result or
        raises its error."""
        result, error = None, None
        if self.plan.grouped:
            self._round(0)
        if self.plan.is_main:
            try:
                result = func()
            except BaseException as e:
                error = e
        if error is not None:
            self.fail(error)
            raise error
        if self.plan.grouped:
            self._round(0)
            result = self._broadcast(result)
        self._done = True  # the ranks part: no more rounds (the caller may go on with its own collectives)
        return result

    def fail(self, error: BaseException) -> None:
        """Tell the others that this rank failed (one failure round, then the messages); returns."""
        if not (self.plan.grouped and self._opened) or self._done:
            return
        if isinstance(error, (RankFailedError, PeerLostError)):
            return
        try:
            if self._pending is not None:
                failures, _ = self._wait(*self._pending)
                self._pending = None
                if failures:  # the others already stopped: join the message exchange as well
                    self._gather(error)
                    return
            self._start_round(1, 0)
            self._wait(*self._pending)
            self._pending = None
            self._gather(error)
        except (RankFailedError, PeerLostError):
            pass

    def _round(self, failed: int, samples: int = 0) -> int:
        self._start_round(failed, samples)
        return self._wait_pending()

    def _start_round(self, failed: int, samples: int) -> None:
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([failed, samples], dtype=torch.int64)
        try:
            work = dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=self._group, async_op=True)
        except RuntimeError as e:
            raise PeerLostError(_lost_message(self.plan, e)) from None
        self._pending = (work, tensor, samples)

    def _wait_pending(self) -> int:
        if self._pending is None:
            return 0
        pending, self._pending = self._pending, None
        failures, total = self._wait(*pending)
        if failures:
            self._gather(None)
        return total - pending[2]

    def _wait(self, work: Any, tensor: Any, _samples: int = 0) -> tuple[int, int]:
        try:
            work.wait()
        except RuntimeError as e:
            raise PeerLostError(_lost_message(self.plan, e)) from None
        return int(tensor[0]), int(tensor[1])

    def _gather(self, error: Optional[BaseException]) -> None:
        """After a round that counted failures: everyone learns who failed and why; healthy ranks raise."""
        import torch.distributed as dist

        mine = None if error is None else f"{type(error).__name__}: {error}"
        gathered: list[Any] = [None] * self.plan.world_size
        try:
            dist.all_gather_object(gathered, mine, group=self._group)
        except RuntimeError as e:
            raise PeerLostError(_lost_message(self.plan, e)) from None
        failures = [(r, m) for r, m in enumerate(gathered) if m is not None]
        if error is not None:
            return  # the failing rank raises its own error
        rank, message = failures[0] if failures else (-1, "unknown error")
        others = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise RankFailedError(
            f"rank {rank} of {self.plan.world_size} failed{others}: {message}", failures=failures
        )

    def _broadcast(self, obj: Any) -> Any:
        import torch.distributed as dist

        box = [obj]
        try:
            dist.broadcast_object_list(box, src=0, group=self._group)
        except RuntimeError as e:
            raise PeerLostError(_lost_message(self.plan, e)) from None
        return box[0]


class PeerLostError(DistributedError):
    """A peer vanished (killed, out of memory, network): no message to gather."""


def _lost_message(plan: RankPlan, error: BaseException) -> str:
    detail = " ".join(str(error).split())[:300]
    return (
        f"rank {plan.rank} of {plan.world_size} lost contact with the other processes ({detail}). One of "
        "them stopped without a message (killed, out of memory?) or timed out; see its log. Committed units "
        "are kept: rerun the same command (with any number of processes) to finish the rest."
    )


def _env_timeout() -> float:
    value = os.environ.get("FXTRACT_DIST_TIMEOUT")
    if not value:
        return DEFAULT_TIMEOUT
    try:
        return float(value)
    except ValueError:
        raise DistributedError(f"FXTRACT_DIST_TIMEOUT={value!r} is not a number of seconds.") from None


def assign_device(device: Any, plan: RankPlan) -> Any:
    """One device per local rank: ``"cuda"`` becomes ``cuda:LOCAL_RANK`` (and the current device).

    An explicit index (``"cuda:1"``) or another device type is kept as given.
    """
    text = str(device)
    if not text.startswith("cuda"):
        return device
    import torch

    if not torch.cuda.is_available():
        return device  # the extractor reports it with its own message
    if text == "cuda" and (plan.grouped or plan.local_world_size > 1):
        count = torch.cuda.device_count()
        device = torch.device("cuda", plan.local_rank % count)
        if plan.local_world_size > count:
            warnings.warn(
                f"{plan.local_world_size} processes on this machine share {count} GPU(s).", stacklevel=2
            )
    if torch.device(device).index is not None:
        torch.cuda.set_device(torch.device(device))  # NCCL and bare .cuda() calls use the current device
    return device


def configure_threads(plan: RankPlan, env: Optional[Mapping[str, str]] = None) -> Optional[int]:
    """Give each process its share of the CPUs when the user did not say (returns the number set).

    Several processes on one machine each using every core slow each other down. torchrun sets
    ``OMP_NUM_THREADS=1`` for its workers when the user did not; that is recognised (the launcher's own
    environment lacks it) and replaced by the process's share.
    """
    env = os.environ if env is None else env
    if plan.local_world_size <= 1 and plan.cpus is None:
        return None
    if "OMP_NUM_THREADS" in env and not _set_by_torchrun(env):
        return None
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        available = os.cpu_count() or 1
    if plan.cpus is not None:
        threads = max(1, min(plan.cpus, available))
    else:
        threads = max(1, available // max(plan.local_world_size, 1))
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)  # for the processes this one starts
    torch.set_num_threads(threads)
    return threads


def _set_by_torchrun(env: Mapping[str, str]) -> bool:
    if "TORCHELASTIC_RUN_ID" not in env or env.get("OMP_NUM_THREADS") != "1":
        return False
    try:  # the agent's environment as it was started: without the variable, torchrun set it
        with open(f"/proc/{os.getppid()}/environ", "rb") as f:
            names = [item.split(b"=", 1)[0] for item in f.read().split(b"\0")]
    except OSError:
        return False
    return b"OMP_NUM_THREADS" not in names


@contextlib.contextmanager
def session(
    *,
    num_shards: int = 1,
    shard_index: int = 0,
    device: Any = "cpu",
    env: Optional[Mapping[str, str]] = None,
    timeout: Optional[float] = None,
) -> Iterator[Session]:
    """The distributed context of one extraction: plan, group, device, rounds; closed on exit.

    On an exception inside the block, the other ranks are told (they raise
    :class:`RankFailedError` with this rank's message) and this rank re-raises its own error.

    Args:
        num_shards: Independent jobs the units are split between (no rendezvous).
        shard_index: This job's shard.
        device: The device asked for; ``"cuda"`` becomes this local rank's GPU (``run.device``).
        env: The environment to read the plan from (``os.environ`` by default).
        timeout: Seconds to wait for the other ranks (``FXTRACT_DIST_TIMEOUT``, default 1800).

    Example:
        >>> with session(env={}) as run:  # one process: every call is local
        ...     units = run.assign(5, committed=lambda: {1, 2})
        ...     for u in units:
        ...         _ = run.unit_done(10)
        ...     _ = run.finish()
        >>> units
        [0, 3, 4]
    """
    plan = _with_existing_group(rank_plan(env, num_shards=num_shards, shard_index=shard_index))
    run = Session(plan, device=device, timeout=timeout)
    run.open()
    try:
        yield run
    except BaseException as e:
        run.fail(e)
        raise
    finally:
        run.close()


def with_session(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``func(*args, num_shards=, shard_index=, device=, **o)`` in a :func:`session`.

    ``func`` gets ``run=`` (the :class:`Session`) and ``device=`` this local rank's device: the one hook
    ``fxtract.extract`` needs around its loop.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **o: Any) -> Any:
        with session(num_shards=o["num_shards"], shard_index=o["shard_index"], device=o["device"]) as run:
            return func(*args, **{**o, "device": run.device, "run": run})

    return wrapper


def _with_existing_group(plan: RankPlan) -> RankPlan:
    """A process group the caller made without launcher variables (``init_method="tcp://..."``) counts."""
    dist = sys.modules.get("torch.distributed")
    if plan.grouped or dist is None or not dist.is_available() or not dist.is_initialized():
        return plan
    if dist.get_world_size() == 1:
        return plan
    return dataclasses.replace(
        plan, rank=dist.get_rank(), world_size=dist.get_world_size(), launcher="process group"
    )


# ---------------------------------------------------------------------------------------------
# Merging independent jobs (``fxtract merge DIR``)


class IncompleteStoreError(DistributedError):
    """``merge`` found units that no job has committed yet; the message names them and their jobs."""


def merge_jobs(path: Any) -> dict[str, Any]:
    """Merge the partial manifests of independent jobs (``num_shards``) into the store's ``manifest.json``.

    Refuses, writing nothing, when the jobs extracted with different configurations (naming their
    parts and what differs) or when units are missing (naming them and the jobs that own them).

    Args:
        path: The store directory.

    Returns:
        The manifest written.

    Raises:
        StoreMismatchError: Parts or shards made by a different command.
        IncompleteStoreError: Units not committed yet.

    Example:
        >>> import fxtract, torch, tempfile
        >>> d = tempfile.mkdtemp()
        >>> m = torch.nn.Sequential(torch.nn.Linear(4, 3))
        >>> for i in range(2):
        ...     _ = fxtract.extract(m, torch.randn(10, 4, generator=torch.Generator().manual_seed(0)), d,
        ...                         nodes=["0"], shard_size=5, num_shards=2, shard_index=i, progress=False)
        >>> merge_jobs(d)["complete"]
        True
    """
    from pathlib import Path

    from .store._errors import StoreMismatchError
    from .store._files import MANIFEST, PARTS, is_tmp, write_json
    from .store._manifest import describe_mismatch, read_parts, scan

    root = Path(path)
    parts_dir = root / PARTS
    names = (
        sorted(p.name for p in parts_dir.iterdir() if p.suffix == ".json" and not is_tmp(p.name))
        if parts_dir.is_dir()
        else []
    )
    parts = dict(zip(names, read_parts(root)))
    if parts:
        first_name, first = next(iter(parts.items()))
        for name, part in parts.items():
            if part.get("fingerprint") != first.get("fingerprint"):
                raise StoreMismatchError(
                    f"the jobs that wrote {str(root)!r} ran different commands: {PARTS}/{name} differs from "
                    f"{PARTS}/{first_name} in {describe_mismatch(first.get('config', {}), part.get('config', {}))}. "
                    f"Rerun the odd job with the same options, or remove {PARTS}/{name} and its shards."
                )
    manifest = scan(root)  # also refuses a shard made with another configuration, naming it
    missing = manifest["missing_units"]
    if missing:
        jobs = sorted({(u % p["writers"], p["writers"]) for u in missing for p in parts.values()})
        owners = ", ".join(f"--shard-index {i} of --num-shards {k}" for i, k in jobs[:8])
        more = f" and {len(jobs) - 8} more" if len(jobs) > 8 else ""
        raise IncompleteStoreError(
            f"{str(root)!r} misses {len(missing)} of {manifest['num_units']} units: {_ranges(missing)} "
            f"({manifest['config']['shard_size']} samples each). They belong to the job(s) {owners}{more}: wait for them to "
            f"finish, or rerun them, then run `fxtract merge {root}` again. {MANIFEST} was not written."
        )
    write_json(root / MANIFEST, manifest)
    return manifest


def _ranges(units: Sequence[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"`` (the first ten runs)."""
    runs: list[list[int]] = []
    for u in units:
        if runs and u == runs[-1][1] + 1:
            runs[-1][1] = u
        else:
            runs.append([u, u])
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:10])
    return text + (", ..." if len(runs) > 10 else "")
