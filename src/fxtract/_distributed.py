"""Extraction over several processes and machines: torchrun, SLURM's srun, independent jobs.

The store's data plane is the filesystem: the dataset is cut into deterministic work units (unit ``u`` =
dataset indices ``[u*S, (u+1)*S)``), each committed atomically as one shard file, and "which units are
done" is read from the directory. So processes only need to agree on *who does which missing unit* and to
hear about each other's failures; they never exchange features.

Three layers:

- :func:`rank_plan` (pure): who am I, from torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/
  ``LOCAL_WORLD_SIZE``, else SLURM's ``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID`` inside an srun
  step, plus ``num_shards``/``shard_index`` for independent jobs (job arrays) that never rendezvous.
- :func:`shard_units` / :func:`split_units` (pure): the partition. Unit ``u`` belongs to shard
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
import datetime
import os
import re
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ._errors import FxtractError

__all__ = [
    "IncompleteStoreError",
    "merge_jobs",
    "DistributedError",
    "RankFailedError",
    "RankPlan",
    "Session",
    "rank_plan",
    "session",
    "shard_units",
    "split_units",
]

# Seconds a rank waits for the others (rendezvous, each round) before it gives up.
DEFAULT_TIMEOUT = 1800.0


class DistributedError(FxtractError, RuntimeError):
    """The processes of a distributed extraction cannot work together (bad plan, lost contact)."""


class RankFailedError(DistributedError):
    """Another rank failed; the message is that rank's."""

    def __init__(self, message: str, *, failures: Sequence[tuple[int, str]] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)


# ---------------------------------------------------------------------------------------------
# The rank plan (pure)


@dataclass(frozen=True)
class RankPlan:
    """Where this process stands among the processes of one extraction.

    ``rank``/``world_size`` count the processes that rendezvous (one torchrun or srun launch);
    ``num_shards``/``shard_index`` split the units between independent launches (job arrays), which
    never talk to each other. ``env`` holds the variables the process group needs that the launcher did
    not set (``MASTER_ADDR``/``MASTER_PORT`` derived from SLURM).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    num_shards: int = 1
    shard_index: int = 0
    launcher: str = "none"  # "torchrun" | "slurm" | "none"
    cpus: Optional[int] = None  # CPUs the launcher gives each process (SLURM_CPUS_PER_TASK)
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def grouped(self) -> bool:
        """Whether this process has peers to rendezvous with (a process group)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 of its launch: the one that reports progress and merges."""
        return self.rank == 0

    def __str__(self) -> str:
        parts = []
        if self.grouped:
            parts.append(f"rank {self.rank}/{self.world_size} ({self.launcher})")
        if self.num_shards > 1:
            parts.append(f"shard {self.shard_index}/{self.num_shards}")
        return ", ".join(parts) or "one process"


def rank_plan(
    env: Optional[Mapping[str, str]] = None, *, num_shards: int = 1, shard_index: int = 0
) -> RankPlan:
    """The rank plan of this process, from its environment (``os.environ`` by default).

    torchrun's variables win; SLURM's count only inside an srun step (in the batch script itself
    ``SLURM_NTASKS`` is the allocation, not the number of processes running this command).

    Args:
        env: The environment to read.
        num_shards: Independent jobs the units are split between (no rendezvous).
        shard_index: This job's shard, ``0 <= shard_index < num_shards``.

    Returns:
        The plan. Nothing is initialised.

    Raises:
        DistributedError: Inconsistent variables or shard options.

    Example:
        >>> plan = rank_plan({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
        >>> plan.rank, plan.world_size, plan.local_rank, plan.launcher
        (1, 2, 1, 'torchrun')
        >>> str(rank_plan({}, num_shards=4, shard_index=3))
        'shard 3/4'
    """
    env = os.environ if env is None else env
    num_shards = _int_option("num_shards", num_shards, minimum=1)
    shard_index = _int_option("shard_index", shard_index, minimum=0)
    if shard_index >= num_shards:
        raise DistributedError(
            f"shard_index={shard_index} is out of range for num_shards={num_shards}: the shards are "
            f"0..{num_shards - 1}. With a SLURM job array use --array=0-{num_shards - 1}."
        )
    shards = {"num_shards": num_shards, "shard_index": shard_index}
    if "RANK" in env and "WORLD_SIZE" in env:
        return _checked(
            RankPlan(
                rank=_int_var(env, "RANK"),
                world_size=_int_var(env, "WORLD_SIZE"),
                local_rank=_int_var(env, "LOCAL_RANK", 0),
                local_world_size=_int_var(env, "LOCAL_WORLD_SIZE", 1),
                launcher="torchrun",
                **shards,
            )
        )
    if "SLURM_PROCID" in env and _in_srun_step(env):
        return _checked(_slurm_plan(env, shards))
    ntasks = env.get("SLURM_NTASKS", "1")
    if "SLURM_PROCID" in env and ntasks not in ("", "1"):
        warnings.warn(
            f"SLURM_NTASKS={ntasks} but this process is not in an srun step: it runs alone. "
            "Launch it with `srun fxtract extract ...` to use every task.",
            stacklevel=2,
        )
    return RankPlan(**shards)


def _slurm_plan(env: Mapping[str, str], shards: dict[str, int]) -> RankPlan:
    world = _int_var(env, "SLURM_STEP_NUM_TASKS", None) or _int_var(env, "SLURM_NTASKS", 1)
    tasks_per_node = _tasks_per_node(env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE"))
    node = _int_var(env, "SLURM_NODEID", 0)
    local_world = tasks_per_node[node] if node < len(tasks_per_node) else 1
    extra = {}
    if "MASTER_ADDR" not in env:
        nodelist = (
            env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        )
        if not nodelist:
            raise DistributedError(
                "SLURM_PROCID is set but neither MASTER_ADDR nor SLURM_JOB_NODELIST is: cannot tell where "
                "rank 0 listens. Export MASTER_ADDR (and MASTER_PORT) in the batch script."
            )
        extra["MASTER_ADDR"] = first_host(nodelist)
    if "MASTER_PORT" not in env:
        extra["MASTER_PORT"] = str(_slurm_port(env))
    cpus = _int_var(env, "SLURM_CPUS_PER_TASK", None)
    return RankPlan(
        rank=_int_var(env, "SLURM_PROCID"),
        world_size=world,
        local_rank=_int_var(env, "SLURM_LOCALID", 0),
        local_world_size=local_world,
        launcher="slurm",
        cpus=cpus,
        env=extra,
        **shards,
    )


def _in_srun_step(env: Mapping[str, str]) -> bool:
    # srun exports the step's variables; the batch script (no srun) has the job's only.
    if "SLURM_STEP_ID" in env or "SLURM_STEPID" in env or "SLURM_STEP_NUM_TASKS" in env:
        return True
    return env.get("SLURM_NTASKS", "1") == "1"  # one task: the plan is the same either way


def _slurm_port(env: Mapping[str, str]) -> int:
    """A port every task of the step derives alike: from the job id (and step id, so steps differ)."""
    job = _int_var(env, "SLURM_JOB_ID", None) or _int_var(env, "SLURM_JOBID", 0)
    step = _int_var(env, "SLURM_STEP_ID", None) or _int_var(env, "SLURM_STEPID", 0)
    return 20000 + (job * 31 + step) % 20000


def first_host(nodelist: str) -> str:
    """The first host of a SLURM hostlist expression.

    Example:
        >>> first_host("gpu-[007-010,012],cpu1")
        'gpu-007'
        >>> first_host("node5")
        'node5'
    """
    head = re.match(r"([^,\[]*)(?:\[([^\]]*)\])?", nodelist.strip())
    if head is None or not (head.group(1) or head.group(2)):
        raise DistributedError(f"cannot read the SLURM node list {nodelist!r}: expected e.g. 'node[01-04]'.")
    prefix, ranges = head.group(1), head.group(2)
    if ranges is None:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def _tasks_per_node(value: Optional[str]) -> list[int]:
    """``"2(x3),1"`` -> ``[2, 2, 2, 1]``."""
    counts: list[int] = []
    for part in (value or "").split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if m:
            counts += [int(m.group(1))] * int(m.group(2) or 1)
    return counts


def _int_var(env: Mapping[str, str], name: str, default: Any = ...) -> Any:
    value = env.get(name)
    if value is None or value == "":
        if default is ...:
            raise DistributedError(f"the environment variable {name} is not set.")
        return default
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"the environment variable {name}={value!r} is not an integer.") from None


def _int_option(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DistributedError(f"{name} must be an int, got {value!r}.")
    if value < minimum:
        raise DistributedError(f"{name} must be at least {minimum}, got {value}.")
    return value


def _checked(plan: RankPlan) -> RankPlan:
    if not 0 <= plan.rank < plan.world_size:
        raise DistributedError(
            f"rank {plan.rank} is out of range for a world of {plan.world_size} processes ({plan.launcher})."
        )
    if not 0 <= plan.local_rank < max(plan.local_world_size, 1):
        raise DistributedError(
            f"local rank {plan.local_rank} is out of range for {plan.local_world_size} processes on this "
            f"machine ({plan.launcher})."
        )
    return plan


# ---------------------------------------------------------------------------------------------
# The partition (pure)


def shard_units(num_units: int, num_shards: int = 1, shard_index: int = 0) -> list[int]:
    """The units of one independent job: ``u % num_shards == shard_index``.

    Fixed by the unit number alone, so jobs that never talk (and reruns with another number of shards)
    agree on nothing but the arithmetic.

    Example:
        >>> shard_units(7, 3, 1)
        [1, 4]
    """
    return list(range(shard_index, num_units, num_shards))


def split_units(units: Sequence[int], world_size: int, rank: int) -> list[int]:
    """This rank's part of ``units`` (the missing ones, as rank 0 saw them): every ``world_size``-th.

    The parts are disjoint, cover ``units`` and differ in length by at most one.

    Example:
        >>> [split_units([0, 2, 3, 5, 6], 2, r) for r in range(2)]
        [[0, 3, 6], [2, 5]]
    """
    return list(units[rank::world_size])


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
            dist.init_process_group(
                backend,
                init_method="env://",
                rank=self.plan.rank,
                world_size=self.plan.world_size,
                timeout=timeout,
            )
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
        if self._owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

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
        return result

    def fail(self, error: BaseException) -> None:
        """Tell the others that this rank failed (one failure round, then the messages); returns."""
        if not (self.plan.grouped and self._opened) or isinstance(error, (RankFailedError, PeerLostError)):
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
    torch.cuda.set_device(torch.device(device))
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
    run = Session(
        rank_plan(env, num_shards=num_shards, shard_index=shard_index), device=device, timeout=timeout
    )
    run.open()
    try:
        yield run
    except BaseException as e:
        run.fail(e)
        raise
    finally:
        run.close()


def log(plan: RankPlan, message: str) -> None:
    """A ``fxtract:`` line on stderr, from rank 0 only."""
    if plan.is_main:
        print(f"fxtract: {message}", file=sys.stderr, flush=True)


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
    names = sorted(p.name for p in parts_dir.iterdir() if p.suffix == ".json" and not is_tmp(p.name))
    parts = dict(zip(names, read_parts(root))) if parts_dir.is_dir() else {}
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
