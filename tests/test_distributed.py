"""Distributed extraction: the rank plan, the partition, and the protocol over two gloo ranks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fxtract._cli import main
from fxtract._distributed import (
    DistributedError,
    RankFailedError,
    RankPlan,
    assign_device,
    configure_threads,
    first_host,
    rank_plan,
    session,
    shard_units,
    split_units,
)

from .dist_helpers import run_ranks
from .models_distributed import BadSample, KilledAt, tiny_conv, tiny_images

MODELS = str(Path(__file__).with_name("models_distributed.py"))

pytestmark = pytest.mark.distributed


# ---------------------------------------------------------------------------------------------
# The rank plan from fake environments


def test_plan_alone():
    plan = rank_plan({})
    assert (plan.rank, plan.world_size, plan.launcher, plan.grouped) == (0, 1, "none", False)
    assert str(plan) == "one process"


def test_plan_torchrun():
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "h"}
    plan = rank_plan(env)
    assert (plan.rank, plan.world_size, plan.local_rank, plan.local_world_size) == (3, 4, 1, 2)
    assert plan.launcher == "torchrun" and plan.grouped and not plan.is_main
    assert plan.env == {}  # torchrun sets MASTER_ADDR/PORT itself


def test_plan_torchrun_wins_over_slurm():
    env = {"RANK": "1", "WORLD_SIZE": "2", "SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_STEP_ID": "0"}
    assert rank_plan(env).launcher == "torchrun"


SRUN = {
    "SLURM_PROCID": "5",
    "SLURM_NTASKS": "8",
    "SLURM_STEP_NUM_TASKS": "6",
    "SLURM_LOCALID": "1",
    "SLURM_NODEID": "2",
    "SLURM_STEP_TASKS_PER_NODE": "2(x2),2",
    "SLURM_STEP_ID": "0",
    "SLURM_JOB_ID": "123456",
    "SLURM_JOB_NODELIST": "gpu-[017-019],cpu3",
    "SLURM_CPUS_PER_TASK": "4",
}


def test_plan_slurm_step():
    plan = rank_plan(SRUN)
    assert (plan.rank, plan.world_size, plan.local_rank, plan.local_world_size) == (5, 6, 1, 2)
    assert plan.launcher == "slurm" and plan.cpus == 4
    assert plan.env["MASTER_ADDR"] == "gpu-017"
    port = int(plan.env["MASTER_PORT"])
    assert 20000 <= port < 40000
    # Every task of the step derives the same port; another job or step another one.
    assert rank_plan({**SRUN, "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}).env["MASTER_PORT"] == str(port)
    assert rank_plan({**SRUN, "SLURM_JOB_ID": "123457"}).env["MASTER_PORT"] != str(port)
    assert rank_plan({**SRUN, "SLURM_STEP_ID": "1"}).env["MASTER_PORT"] != str(port)


def test_plan_slurm_keeps_the_users_master():
    plan = rank_plan({**SRUN, "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234"})
    assert plan.env == {}


def test_plan_slurm_batch_script_without_srun_runs_alone():
    env = {"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "n1"}
    with pytest.warns(UserWarning, match=r"SLURM_NTASKS=4 but this process is not in an srun step.*srun"):
        plan = rank_plan(env)
    assert plan.world_size == 1 and not plan.grouped


def test_plan_slurm_one_task_needs_no_master():
    plan = rank_plan({"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_CPUS_PER_TASK": "3"})
    assert (plan.world_size, plan.launcher, plan.cpus, plan.env) == (1, "slurm", 3, {})


def test_plan_slurm_one_task_array_job():
    env = {"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_JOB_NODELIST": "n1", "SLURM_ARRAY_TASK_ID": "3"}
    plan = rank_plan(env, num_shards=4, shard_index=3)
    assert (plan.world_size, plan.num_shards, plan.shard_index) == (1, 4, 3)
    assert str(plan) == "shard 3/4"


@pytest.mark.parametrize(
    ("nodelist", "host"),
    [
        ("node5", "node5"),
        ("n[01-04]", "n01"),
        ("a[7,9-12]b", "a7"),
        ("x-[003-004],y[1-2]", "x-003"),
        ("h1,h2", "h1"),
    ],
)
def test_first_host(nodelist, host):
    assert first_host(nodelist) == host


@pytest.mark.parametrize(
    ("env", "kwargs", "match"),
    [
        (
            {"RANK": "2", "WORLD_SIZE": "2"},
            {},
            r"rank 2 is out of range for a world of 2 processes \(torchrun\)",
        ),
        ({"RANK": "x", "WORLD_SIZE": "2"}, {}, r"RANK='x' is not an integer"),
        ({}, {"num_shards": 2, "shard_index": 2}, r"shard_index=2 is out of range for num_shards=2.*0\.\.1"),
        ({}, {"num_shards": 0}, r"num_shards must be at least 1, got 0"),
        ({}, {"shard_index": "1"}, r"shard_index must be an int, got '1'"),
        (
            {"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_STEP_ID": "0"},
            {},
            r"neither MASTER_ADDR nor SLURM_JOB_NODELIST",
        ),
    ],
)
def test_plan_errors(env, kwargs, match):
    with pytest.raises(DistributedError, match=match):
        rank_plan(env, **kwargs)


def test_threads_share_the_cpus():
    before = torch.get_num_threads()
    saved = os.environ.get("OMP_NUM_THREADS")
    try:
        available = len(os.sched_getaffinity(0))
        plan = RankPlan(rank=0, world_size=2, local_world_size=2)
        assert configure_threads(plan, env={}) == max(1, available // 2)
        assert torch.get_num_threads() == max(1, available // 2)
        assert configure_threads(plan, env={"OMP_NUM_THREADS": "3"}) is None  # the user's choice
        assert configure_threads(RankPlan(), env={}) is None  # one process: torch's default
    finally:
        torch.set_num_threads(before)
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved


# ---------------------------------------------------------------------------------------------
# The partition


@pytest.mark.parametrize("num_units", [0, 1, 7, 10])
@pytest.mark.parametrize("num_shards", [1, 2, 3])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_partition_covers_every_unit_once(num_units, num_shards, world):
    parts = [
        split_units(shard_units(num_units, num_shards, s), world, r)
        for s in range(num_shards)
        for r in range(world)
    ]
    flat = sorted(u for p in parts for u in p)
    assert flat == list(range(num_units))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1 + (num_units % num_shards > 0)


def test_rerun_with_another_world_size_does_only_the_missing_units():
    committed = {0, 1, 4}  # a 2-rank run died after these
    missing = [u for u in shard_units(8) if u not in committed]
    parts = [split_units(missing, 3, r) for r in range(3)]
    assert parts == [[2, 6], [3, 7], [5]]


def test_one_process_session_is_local():
    with session(env={}) as run:
        assert not run.plan.grouped
        assert run.assign(4, committed=lambda: [1]) == [0, 2, 3]
        assert run.missing == [0, 2, 3]
        assert [run.unit_done(5) for _ in range(3)] == [0, 0, 0]
        assert run.finish() == 0
        assert run.run_on_main(lambda: "merged") == "merged"


# ---------------------------------------------------------------------------------------------
# The protocol over two gloo ranks (forked processes)


def _ranks_work(rank, mode):
    with session() as run:
        units = run.assign(7, committed=lambda: {2})
        others = 0
        for n, u in enumerate(units):
            if mode == "fail" and rank == 1 and n == 1:
                raise ValueError(f"cannot decode image {u}.jpg")
            if mode == "kill" and rank == 1 and n == 1:
                os._exit(9)  # like SIGKILL: no message, no cleanup
            time.sleep(0.02)
            others += run.unit_done(10 + rank)
        others += run.finish()
        merged = run.run_on_main(lambda: "merged")
        return units, run.missing, others, merged


def test_two_ranks_partition_and_global_counts():
    answers = run_ranks(_ranks_work, 2, ("ok",))
    assert answers[0] == ("ok", ([0, 3, 5], [0, 1, 3, 4, 5, 6], 3 * 11, "merged"))
    assert answers[1] == ("ok", ([1, 4, 6], [0, 1, 3, 4, 5, 6], 3 * 10, "merged"))


def test_a_failing_rank_raises_on_every_rank_with_its_message():
    answers = run_ranks(_ranks_work, 2, ("fail",))
    assert answers[1][0] == "error" and answers[1][1][:2] == ("ValueError", "cannot decode image 4.jpg")
    assert answers[0][0] == "error"
    kind, message, _ = answers[0][1]
    assert kind == "RankFailedError"
    assert message == "rank 1 of 2 failed: ValueError: cannot decode image 4.jpg"


def test_a_killed_rank_makes_the_others_raise_not_hang():
    start = time.monotonic()
    answers = run_ranks(_ranks_work, 2, ("kill",), timeout=60)
    assert time.monotonic() - start < 50  # the timeout is 60 s: it did not wait for it
    assert 1 not in answers or answers[1][0] != "ok"
    kind, message, _ = answers[0][1]
    assert kind == "PeerLostError"
    assert "lost contact with the other processes" in message and "rerun the same command" in message


def _fails_early(rank):
    with session() as run:

        def committed():
            raise OSError("store unreadable")

        run.assign(4, committed=committed)  # rank 0 reads the directory; rank 1 waits in the round
    return "unreachable"


def test_a_failure_before_the_units_propagates():
    answers = run_ranks(_fails_early, 2)
    assert answers[0][1][:2] == ("OSError", "store unreadable")
    assert answers[1][1][:2] == ("RankFailedError", "rank 0 of 2 failed: OSError: store unreadable")


def _merge_fails(rank):
    with session() as run:
        run.assign(2, committed=set)
        for _ in run._units:
            run.unit_done(1)
        run.finish()

        def merge():
            raise RuntimeError("units 3, 5 are missing")

        run.run_on_main(merge)


def test_a_failing_merge_raises_on_every_rank():
    answers = run_ranks(_merge_fails, 2)
    assert answers[0][1][:2] == ("RuntimeError", "units 3, 5 are missing")
    assert answers[1][1][:2] == (
        "RankFailedError",
        "rank 0 of 2 failed: RuntimeError: units 3, 5 are missing",
    )


def test_rank_failed_error_is_a_runtime_error():
    assert issubclass(RankFailedError, RuntimeError)


# ---------------------------------------------------------------------------------------------
# Extraction over two gloo ranks: the store is the single-process store

OPTIONS = {"nodes": ["conv", "head"], "pool": "avg", "shard_size": 4, "batch_size": 2, "progress": False}


def _extract(out, data=None, **options):
    import fxtract

    return fxtract.extract(tiny_conv(), KilledAt() if data is None else data, out, **{**OPTIONS, **options})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The store one process writes (6 units of 4 samples, the last of 3)."""
    out = tmp_path_factory.mktemp("single")
    _extract(out)
    return out


def _shard_files(root):
    return sorted(p.name for p in root.iterdir() if re.fullmatch(r"shard-\d+\.safetensors", p.name))


def assert_same_store(a, b, *, byte_identical=True):
    from fxtract import open_features

    sa, sb = open_features(a), open_features(b)
    assert sb.complete and len(sb) == len(sa) == 23
    assert _shard_files(a) == _shard_files(b)
    np.testing.assert_array_equal(sb.indices, sa.indices)
    assert sb.keys() == sa.keys()
    for key in sa.keys():  # noqa: SIM118 - a store, not a dict
        np.testing.assert_array_equal(sb[key].numpy(), sa[key].numpy())
    if byte_identical:
        assert sb.sources == sa.sources
        for name in _shard_files(a):
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
        ma, mb = (json.loads((root / "manifest.json").read_text()) for root in (a, b))
        assert ma.pop("writers") <= mb.pop("writers")  # the number of jobs that wrote it
        assert ma == mb


def _rank_extract(rank, out):
    store = _extract(out)
    return len(store), store.complete


def test_two_ranks_write_the_single_process_store(reference, tmp_path):
    answers = run_ranks(_rank_extract, 2, (tmp_path,))
    assert answers == {0: ("ok", (23, True)), 1: ("ok", (23, True))}
    assert_same_store(reference, tmp_path)
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["writer-00000-of-00001.json"]


def _killed_on_rank_1(rank, out):
    if rank == 1:
        os.environ["FXTRACT_TEST_KILL_AT"] = "13"  # rank 1's second unit (units 1, 3, 5 are its)
    return _extract(out) and "finished"


@pytest.mark.parametrize("rerun_world", [1, 2, 3])
def test_a_killed_rank_then_a_rerun_completes_only_the_missing_units(reference, tmp_path, rerun_world):
    answers = run_ranks(_killed_on_rank_1, 2, (tmp_path,))
    assert answers[1] == ("killed", None)
    assert answers[0][0] == "error" and answers[0][1][0] == "PeerLostError"
    first = {name: (tmp_path / name).stat() for name in _shard_files(tmp_path)}
    assert first and "shard-000003.safetensors" not in first  # some units committed, not all
    if rerun_world == 1:
        _extract(tmp_path)
    else:
        answers = run_ranks(_rank_extract, rerun_world, (tmp_path,))
        assert all(a == ("ok", (23, True)) for a in answers.values()), answers
    assert_same_store(reference, tmp_path)
    for name, stat in first.items():  # committed units were not written again
        now = (tmp_path / name).stat()
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns), name


def _bad_sample(rank, out):
    return _extract(out, BadSample(bad=5))


def test_a_failing_rank_raises_on_both_ranks_with_its_message(tmp_path):
    answers = run_ranks(_bad_sample, 2, (tmp_path,))
    kind, message, _ = answers[1][1]
    assert kind == "SampleReadError" and re.match(r"sample 5 \(BadSample\[5\]\) cannot be read", message)
    assert "truncated file img5.jpg" in message
    kind, message0, _ = answers[0][1]
    assert kind == "RankFailedError"
    assert message0 == f"rank 1 of 2 failed: SampleReadError: {message}"


# ---------------------------------------------------------------------------------------------
# --num-shards jobs (no rendezvous), then `fxtract merge`

CLI = ["extract", f"{MODELS}:tiny_conv", "DATA", "--nodes", "conv", "--nodes", "head", "--pool", "avg"]
CLI += ["--shard-size", "4", "--batch-size", "2", "--num-workers", "0", "--no-progress"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "images.pt"
    torch.save(tiny_images(), path)
    return path


def _cli_job(index, data, out, shards, *extra):
    from click.testing import CliRunner

    from fxtract._cli import main

    args = [str(data) if a == "DATA" else a for a in CLI]
    args += ["--out", str(out), "--num-shards", str(shards), "--shard-index", str(index), *extra]
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def cli_reference(data_file, tmp_path_factory):
    """The store one `fxtract extract` writes."""
    out = tmp_path_factory.mktemp("cli-single")
    assert _run_job(0, data_file, out, 1) == 0
    return out


def test_num_shards_jobs_then_merge(cli_reference, data_file, tmp_path):
    answers = run_ranks(_cli_job, 2, (data_file, tmp_path, 2), group=False)
    assert [answers[i][0] for i in (0, 1)] == ["ok", "ok"]
    assert {answers[i][1][0] for i in (0, 1)} == {0}
    (tmp_path / "manifest.json").unlink()  # as if no job knew it finished last
    result = CliRunner().invoke(main, ["merge", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "merged 23 samples in 6 shards (2 job(s))" in result.output
    assert_same_store(cli_reference, tmp_path, byte_identical=True)
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == [
        "writer-00000-of-00002.json",
        "writer-00001-of-00002.json",
    ]


def test_merge_refuses_missing_units_naming_them_and_their_job(data_file, tmp_path):
    assert _run_job(0, data_file, tmp_path, 2) == 0
    (tmp_path / "manifest.json").unlink()
    result = CliRunner().invoke(main, ["merge", str(tmp_path)])
    assert result.exit_code == 1
    assert re.search(
        r"Error: .* misses 3 of 6 units: 1, 3, 5 \(4 samples each\)\. They belong to the job\(s\) "
        r"--shard-index 1 of --num-shards 2: .*manifest\.json was not written\.",
        result.output,
    ), result.output
    assert not (tmp_path / "manifest.json").exists()


def test_merge_refuses_jobs_that_ran_another_command(data_file, tmp_path):
    other = tmp_path / "other"
    assert _run_job(0, data_file, tmp_path / "store", 2) == 0
    assert _run_job(1, data_file, other, 2, "--pool", "max") == 0
    for path in [*other.glob("shard-*"), *(other / "parts").iterdir()]:  # both started on an empty dir
        target = tmp_path / "store" / path.relative_to(other)
        if not target.exists():
            path.rename(target)
    result = CliRunner().invoke(main, ["merge", str(tmp_path / "store")])
    assert result.exit_code == 1
    assert re.search(
        r"Error: the jobs that wrote .* ran different commands: parts/writer-00001-of-00002\.json differs from "
        r"parts/writer-00000-of-00002\.json in pool\S* \(.*avg.* before, .*max.* now\)",
        result.output,
    ), result.output


def _run_job(index, data, out, shards, *extra):
    code, output = _cli_job(index, data, out, shards, *extra)
    assert code == 0, output
    return code


# ---------------------------------------------------------------------------------------------
# Real launchers (each process imports torch: slow on a loaded machine)


def _subprocess_env():
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "OMP_NUM_THREADS")
    }
    src = str(Path(__file__).resolve().parent.parent / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    env["TQDM_DISABLE"] = "1"
    return env


def _cli_args(data, out, *extra):
    return [str(data) if a == "DATA" else a for a in CLI[1:]] + ["--out", str(out), *extra]


@pytest.mark.slow
def test_torchrun_standalone_end_to_end(cli_reference, data_file, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "fxtract", "extract", *_cli_args(data_file, tmp_path)]
    proc = subprocess.run(command, env=_subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "23 samples" in proc.stderr and "(complete)" in proc.stderr
    assert_same_store(cli_reference, tmp_path)


@pytest.mark.slow
def test_num_shards_as_two_processes_then_fxtract_merge(cli_reference, data_file, tmp_path):
    def shard_options(i):
        return ["--num-shards", "2", "--shard-index", str(i)]

    jobs = [
        subprocess.Popen(
            [sys.executable, "-m", "fxtract", "extract", *_cli_args(data_file, tmp_path, *shard_options(i))],
            env={**_subprocess_env(), "OMP_NUM_THREADS": "1"},
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for job in jobs:
        _, err = job.communicate(timeout=600)
        assert job.returncode == 0, err[-3000:]
    (tmp_path / "manifest.json").unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "fxtract", "merge", str(tmp_path)],
        env=_subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert_same_store(cli_reference, tmp_path)


def _alone_in_a_world_of_two(rank):
    os.environ["WORLD_SIZE"] = "2"  # the other rank never starts
    os.environ["FXTRACT_DIST_TIMEOUT"] = "2"
    with session():
        return "unreachable"


def test_a_rank_that_never_comes_is_a_clear_error_after_the_timeout():
    answers = run_ranks(_alone_in_a_world_of_two, 1)
    kind, message, _ = answers[0][1]
    assert kind == "DistributedError"
    assert re.match(
        r"rank 0/2 \(torchrun\) could not join the other processes at 127\.0\.0\.1:\d+ \(gloo\)", message
    )
    assert "Check that all 2 were started" in message


def _with_progress(rank, out):
    import io
    import sys

    os.environ.pop("TQDM_DISABLE", None)
    sys.stderr = io.StringIO()
    _extract(out, progress=True)
    return sys.stderr.getvalue()


def test_progress_on_rank_0_only_with_global_counts(tmp_path):
    answers = run_ranks(_with_progress, 2, (tmp_path,))
    assert answers[1] == ("ok", "")
    status, bar = answers[0]
    assert status == "ok" and "23/23" in bar, bar


@pytest.fixture
def two_fake_gpus(monkeypatch):
    current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: current.append(torch.device(d)))
    return current


def test_one_gpu_per_local_rank(two_fake_gpus):
    plan = RankPlan(rank=3, world_size=4, local_rank=1, local_world_size=2)
    assert assign_device("cuda", plan) == torch.device("cuda", 1)
    assert assign_device(torch.device("cuda"), plan) == torch.device("cuda", 1)
    assert two_fake_gpus == [torch.device("cuda", 1)] * 2
    assert assign_device("cuda:0", plan) == "cuda:0"  # an explicit index is the user's
    assert assign_device("cpu", plan) == "cpu"
    assert assign_device("cuda", RankPlan()) == "cuda"  # one process: torch's current device
    crowded = RankPlan(rank=3, world_size=4, local_rank=3, local_world_size=4)
    with pytest.warns(UserWarning, match="4 processes on this machine share 2 GPU"):
        assert assign_device("cuda", crowded) == torch.device("cuda", 1)


def _in_the_callers_group(rank, out, env_vars):
    import torch.distributed as dist

    port = os.environ["MASTER_PORT"]
    if not env_vars:  # a group made by hand: no launcher variables for fxtract to read
        for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
            del os.environ[name]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    from fxtract._distributed import _with_existing_group

    plan = _with_existing_group(rank_plan())
    assert (plan.rank, plan.world_size) == (rank, 2)
    store = _extract(out)
    dist.barrier()  # the caller's group is still there, and usable
    value = torch.tensor([rank + 1])
    dist.all_reduce(value)
    dist.destroy_process_group()
    return len(store), int(value)


@pytest.mark.parametrize("env_vars", [True, False])
def test_the_callers_own_process_group_is_used_and_left_open(reference, tmp_path, env_vars):
    answers = run_ranks(_in_the_callers_group, 2, (tmp_path, env_vars))
    assert answers == {0: ("ok", (23, 3)), 1: ("ok", (23, 3))}
    assert_same_store(reference, tmp_path)


@pytest.mark.slow
def test_the_benchmark_runs():
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "distributed.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--samples", "64"],
        env=_subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"\| 2 ranks \(gloo\) +\| 2 +\| [\d.]+ +\| \d+\.\d\dx", proc.stdout), proc.stdout
    assert re.search(r"\| 2 --num-shards jobs +\| 2 +\| [\d.]+ +\| \d+\.\d\dx", proc.stdout), proc.stdout


def test_merge_of_a_directory_that_is_no_store(tmp_path):
    result = CliRunner().invoke(main, ["merge", str(tmp_path)])
    assert result.exit_code == 1
    assert "is not an fxtract feature store" in result.output and "Traceback" not in result.output
