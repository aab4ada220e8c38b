"""Sharded sampling (`genrep sample RUN -n N --out DIR`): rank-count invariance, resume, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from conftest import assert_one_line_error, run_cli
from genrep.errors import InputError
from genrep.experiments import sharded_sampling as S
from genrep.training.preemption import PREEMPTED_EXIT_CODE, Preempted, preemptible

THREADS = torch.get_num_threads()
needs_gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed gloo is unavailable")
LAUNCH_ENV_KEYS = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "LOCAL_WORLD_SIZE",
                   "GROUP_RANK", "TORCHELASTIC_RUN_ID", "SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_STEP_ID")


def clean_env() -> dict[str, str]:
    """This process's environment without launcher variables, one OpenMP thread per process (the same
    kernels, so the same floats, in 1 and in 2 processes)."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV_KEYS}
    return {**env, "OMP_NUM_THREADS": "1"}


def genrep(*argv, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genrep", *map(str, argv)], env=clean_env(), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharded") / "vae"
    from genrep.cli.main import main

    assert main(["train", "vae", "--dataset", "digits", "--steps", "20", "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharded") / "cvae"
    from genrep.cli.main import main

    assert main(["train", "cvae", "--dataset", "digits", "--steps", "5", "--out", str(out), "--no-progress"]) == 0
    return out


def shard_arrays(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder) as arrays:
        return {k: arrays[k] for k in arrays}


def test_shard_plan_covers_every_index_once_and_round_robins_ranks():
    plan = S.ShardPlan(1001, 100)
    assert plan.num_shards == 11 and plan.indices(10) == range(1000, 1001)
    covered = [i for k in range(plan.num_shards) for i in plan.indices(k)]
    assert covered == list(range(1001))
    assert sorted(plan.of_rank(0, 3) + plan.of_rank(1, 3) + plan.of_rank(2, 3)) == list(range(11))
    assert plan.of_rank(1, 3) == [1, 4, 7, 10]
    assert len({S.shard_seed(0, k) for k in range(50)} | {S.shard_seed(1, k) for k in range(50)}) == 100
    assert S.shard_seed(3, 7) == S.shard_seed(3, 7) and 0 <= S.shard_seed(3, 7) < 2**63
    with pytest.raises(InputError, match="--shard-size must be an integer >= 1, got 0"):
        S.ShardPlan(10, 0)


@needs_gloo
def test_one_and_two_processes_write_the_same_images_and_a_rerun_completes_only_missing_shards(vae_run, tmp_path):
    """A 2-process job stopped by SIGTERM (and then missing one more shard, as if a node died) is completed by
    the same command, which draws only the missing shards; the result equals one process's, bit for bit."""
    one, two = tmp_path / "one", tmp_path / "two"
    n, size = 1200, 4  # 300 shards: the signal lands in the middle of the job
    torch.set_num_threads(1)  # as each of the two processes
    try:
        S.sample_shards(vae_run, one, S.ShardPlan(n, size), progress=False, log=None)
    finally:
        torch.set_num_threads(THREADS)
    command = [sys.executable, "-m", "genrep", "sample", str(vae_run), "-n", str(n), "--shard-size", str(size),
               "--out", str(two), "--devices", "2", "--no-progress"]
    proc = subprocess.Popen(command, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (two / S.shard_name(1, "npz")).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # to rank 0 only
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT_CODE, err[-2000:]
    assert "stopped by SIGTERM after writing" in err and "run the same command again" in err
    done_before = [k for k in range(300) if (two / S.shard_name(k, "npz")).exists()]
    assert 2 <= len(done_before) < 300 and not (two / S.MANIFEST).exists()
    (two / S.shard_name(done_before[-1], "npz")).unlink()  # and a node died with a shard
    kept = {k: (two / S.shard_name(k, "npz")).stat().st_mtime_ns for k in done_before[:-1]}

    done = genrep(*command[3:])
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{300 - len(kept)} drawn now by 2 process(es), {len(kept)} already on disk" in done.stdout
    assert {k: (two / S.shard_name(k, "npz")).stat().st_mtime_ns for k in kept} == kept
    for k in (0, 1, 299):
        a, b = shard_arrays(one / S.shard_name(k, "npz")), shard_arrays(two / S.shard_name(k, "npz"))
        assert np.array_equal(a["images"], b["images"]) and np.array_equal(a["index"], b["index"])
    images = S.load_shards(two)
    assert images.shape == (n, 1, 8, 8) and images.dtype == torch.float32
    assert torch.equal(images, S.load_shards(one))
    assert len({tuple(s["sha256"] for s in S.read_json(f / S.MANIFEST)["shards"]) for f in (one, two)}) == 1


def test_shard_images_depend_on_seed_and_index_not_on_order(vae_run, tmp_path):
    from genrep.experiments.train import load_trained_model

    model = load_trained_model(vae_run)
    plan = S.ShardPlan(40, 10)
    first = S.draw_shard(model, plan, 3, seed=5, device="cpu")
    S.draw_shard(model, plan, 0, seed=5, device="cpu")  # drawing another shard in between changes nothing
    assert np.array_equal(S.draw_shard(model, plan, 3, seed=5, device="cpu")["images"], first["images"])
    assert not np.array_equal(S.draw_shard(model, plan, 3, seed=6, device="cpu")["images"], first["images"])
    assert not np.array_equal(S.draw_shard(model, plan, 2, seed=5, device="cpu")["images"], first["images"])
    assert first["images"].dtype == np.uint8 and list(first["index"]) == list(range(30, 40))


def test_conditional_shards_balance_the_labels_and_png_shards_read_back_like_npz(cvae_run, tmp_path):
    S.sample_shards(cvae_run, tmp_path / "npz", S.ShardPlan(25, 10), seed=1, progress=False, log=None)
    S.sample_shards(cvae_run, tmp_path / "png", S.ShardPlan(25, 10), seed=1, fmt="png", progress=False, log=None)
    labels = np.concatenate([shard_arrays(tmp_path / "npz" / S.shard_name(k, "npz"))["labels"] for k in range(3)])
    assert list(labels) == [i % 10 for i in range(25)]
    assert sorted(p.name for p in (tmp_path / "png" / "shard_000002").iterdir()) == ["000020.png", "000021.png",
                                                                                     "000022.png", "000023.png",
                                                                                     "000024.png"]
    assert torch.equal(S.load_shards(tmp_path / "png"), S.load_shards(tmp_path / "npz"))


def test_a_stop_signal_between_shards_keeps_the_finished_ones(vae_run, tmp_path, monkeypatch):
    real_write = S.write_shard

    def write_then_signal(out, shard, arrays, fmt):
        path = real_write(out, shard, arrays, fmt)
        os.kill(os.getpid(), signal.SIGTERM)  # caught by preemptible(): only a flag
        return path

    monkeypatch.setattr(S, "write_shard", write_then_signal)
    with preemptible(), pytest.raises(Preempted, match="stopped by SIGTERM after writing 1 shard"):
        S.sample_shards(vae_run, tmp_path / "s", S.ShardPlan(30, 10), progress=False, log=None)
    assert S.missing_shards(tmp_path / "s", S.ShardPlan(30, 10), "npz") == [1, 2]
    monkeypatch.setattr(S, "write_shard", real_write)
    assert S.sample_shards(vae_run, tmp_path / "s", S.ShardPlan(30, 10), progress=False, log=None)["written"] == 2


def test_sampling_job_mistakes_get_one_line_errors(vae_run, cvae_run, tmp_path, capsys):
    out = tmp_path / "job"
    assert run_cli(capsys, "sample", vae_run, "-n", 30, "--shard-size", 10, "--out", out, "--no-progress")[0] == 0
    assert_one_line_error(*run_cli(capsys, "sample", vae_run, "-n", 40, "--shard-size", 10, "--out", out)[::2],
                          "-n 30, not -n 40", "pass -n 30")
    assert_one_line_error(*run_cli(capsys, "sample", vae_run, "-n", 30, "--shard-size", 10, "--seed", 2, "--out",
                                   out)[::2], "--seed 0, not --seed 2")
    assert_one_line_error(*run_cli(capsys, "sample", cvae_run, "-n", 30, "--shard-size", 10, "--out", out)[::2],
                          "another run")
    assert_one_line_error(*run_cli(capsys, "sample", vae_run, "-n", 30, "--out", out)[::2], "shard_size (10 → 500)")
    (out / S.shard_name(1, "npz")).unlink()
    assert_one_line_error(*run_cli(capsys, "evaluate", "--real", "digits", "--fake", out, "--no-progress")[::2],
                          "unfinished sampling job", "1 of 3 shards are missing (1)", "--shard-size 10")
    (out / S.shard_name(1, "npz")).write_bytes(b"not an npz")
    assert_one_line_error(*run_cli(capsys, "evaluate", "--real", "digits", "--fake", out, "--no-progress")[::2],
                          f"shard {out / S.shard_name(1, 'npz')} is corrupted", "delete it")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert_one_line_error(*run_cli(capsys, "sample", vae_run, "-n", 30, "--out", tmp_path / "other")[::2],
                          "not a sampling folder")
    assert_one_line_error(*run_cli(capsys, "sample", vae_run, "-n", 30, "--out", tmp_path / "d", "--devices", 0)[::2],
                          "--devices must be an integer >= 1")
    cores = os.cpu_count()
    assert_one_line_error(*run_cli(capsys, "sample", vae_run, "-n", 30, "--out", tmp_path / "d", "--devices",
                                   cores + 1)[::2], f"exceeds the {cores} CPU cores")
    assert_one_line_error(*run_cli(capsys, "sample", vae_run, "-n", 30, "--out", tmp_path / "g.png", "--devices",
                                   2)[::2], "--devices is for sharded sampling")
    assert not (tmp_path / "d").exists()


def test_a_sampling_folder_in_use_is_refused_by_name(vae_run, tmp_path, capsys):
    from genrep.utils.locks import lock_folder, unlock_folder

    out = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; os.makedirs(sys.argv[1]);"
                               " fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX);"
                               " print('locked', flush=True); time.sleep(60)", str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert_one_line_error(*run_cli(capsys, "sample", vae_run, "-n", 10, "--out", out)[::2],
                              f"sampling folder {out} is in use by another genrep process")
    finally:
        holder.kill()
        holder.wait()
    lock_folder(out)
    unlock_folder(out)
    assert PREEMPTED_EXIT_CODE == 75


@needs_gloo
def test_torchrun_runs_the_same_command_and_writes_the_same_shards(vae_run, tmp_path):
    one = tmp_path / "one"
    S.sample_shards(vae_run, one, S.ShardPlan(120, 50), progress=False, log=None)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                           "genrep", "sample", str(vae_run), "-n", "120", "--shard-size", "50", "--out",
                           str(tmp_path / "two"), "--no-progress"], env=clean_env(), capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "by 2 process(es)" in done.stdout  # --devices came from torchrun's LOCAL_WORLD_SIZE
    assert torch.equal(S.load_shards(tmp_path / "two"), S.load_shards(one))


SMALL_UNET = ["--set", "model.steps=40", "--set", "model.sample_steps=4", "--set", "model.unet.model_channels=8",
              "--set", "model.unet.channel_mult=[1,2]", "--set", "model.unet.num_res_blocks=1"]
SMALL = {"ddgm": SMALL_UNET, "cddgm": SMALL_UNET, "joint-ddgm": SMALL_UNET,
         "daed": [*SMALL_UNET, "--set", "model.dae_unet.model_channels=8", "--set", "model.dae_unet.channel_mult=[1,2]",
                  "--set", "model.dae_unet.num_res_blocks=1"]}


@pytest.mark.parametrize("name", ["vae", "cvae", "wae", "cwae", "e2e-sae", "ce2e-sae", "dcgan", "cdcgan", "ddgm", "cddgm",
                                  "daed", "joint-ddgm"])
def test_every_generative_model_samples_into_shards(name, tmp_path):
    from genrep.cli.main import main
    from genrep.experiments.train import load_trained_model
    from genrep.models.registry import get_model_spec, model_names

    assert {n for n in model_names() if get_model_spec(n).generative} <= {
        "vae", "cvae", "wae", "cwae", "e2e-sae", "ce2e-sae", "dcgan", "cdcgan", "ddgm", "cddgm", "daed", "joint-ddgm"}
    run = tmp_path / name
    assert main(["train", name, "--dataset", "digits", "--steps", "1", "--batch-size", "16", *SMALL.get(name, []),
                 "--out", str(run), "--no-progress"]) == 0
    plan = S.ShardPlan(12, 5)
    S.sample_shards(run, tmp_path / "s", plan, seed=2, progress=False, log=None)
    images = S.load_shards(tmp_path / "s")
    assert images.shape == (12, 1, 8, 8) and 0 <= images.min() and images.max() <= 1
    stored = shard_arrays(tmp_path / "s" / S.shard_name(2, "npz"))
    again = S.draw_shard(load_trained_model(run), plan, 2, seed=2, device="cpu")
    assert np.array_equal(stored["images"], again["images"]) and list(stored["index"]) == [10, 11]
    if get_model_spec(name).conditional:
        assert list(stored["labels"]) == [0, 1]
