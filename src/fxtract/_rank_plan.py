"""Who does what in a distributed extraction, from the launcher's environment: pure, torch-free.

:func:`rank_plan` reads torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``LOCAL_WORLD_SIZE``, else SLURM's
``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID`` inside an srun step (``MASTER_ADDR``/``MASTER_PORT``
derived from ``SLURM_JOB_NODELIST`` and the job id when unset), plus ``num_shards``/``shard_index`` for
independent jobs. :func:`shard_units` and :func:`split_units` partition the work units. ``_distributed``
puts them to work.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from ._errors import FxtractError

__all__ = ["DistributedError", "RankPlan", "first_host", "rank_plan", "shard_units", "split_units"]


class DistributedError(FxtractError, RuntimeError):
    """The processes of a distributed extraction cannot work together (bad plan, lost contact)."""


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
    if world > 1 and "MASTER_ADDR" not in env:  # one task needs no rendezvous
        nodelist = (
            env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        )
        if not nodelist:
            raise DistributedError(
                "SLURM_PROCID is set but neither MASTER_ADDR nor SLURM_JOB_NODELIST is: cannot tell where "
                "rank 0 listens. Export MASTER_ADDR (and MASTER_PORT) in the batch script."
            )
        extra["MASTER_ADDR"] = first_host(nodelist)
    if world > 1 and "MASTER_PORT" not in env:
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
