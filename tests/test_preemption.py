"""Preemption and concurrency: SIGTERM/SIGUSR1 checkpoint and stop with exit 75, --resume [auto]
continues to the same weights, SLURM requeue, and the run-folder lock."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import assert_one_line_error, run_cli
from genrep.training.checkpoint import checkpoint_step, load_checkpoint
from genrep.training.preemption import PREEMPTED_EXIT_CODE, preempted, preemptible, received_signal
from test_sharded_sampling import clean_env, genrep

TRAIN = ("train", "vae", "--dataset", "digits", "--set", "train.checkpoint_every=40", "--no-progress")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hold_lock(folder: Path) -> subprocess.Popen:
    """Another process holding `folder`'s lock (as a running genrep would), until killed."""
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; os.makedirs(sys.argv[1],"
                               " exist_ok=True); fd = os.open(sys.argv[1], os.O_RDONLY);"
                               " fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(120)",
                               str(folder)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_stop_signal_checkpoints_exits_75_and_resume_auto_reaches_the_uninterrupted_weights(tmp_path):
    signame = "SIGTERM"  # SIGUSR1, SLURM's warning signal: the two-process test below
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "genrep", *TRAIN, "--steps", "1000000", "--out", str(run)],
                            env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not checkpoint.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(getattr(signal, signame))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT_CODE, err[-2000:]
    assert f"genrep: stopped by {signame} after writing the checkpoint at step" in err and "--resume" in err
    assert "Traceback" not in err
    stopped_at = checkpoint_step(checkpoint)
    assert f"at step {stopped_at} (" in err  # the checkpoint written on the signal, not only the last periodic one
    assert stopped_at >= 40 and not (run / "model.safetensors").exists()

    steps = stopped_at + 25
    resumed = genrep(*TRAIN, "--steps", steps, "--out", run, "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    fresh = genrep(*TRAIN, "--steps", steps, "--out", tmp_path / "fresh", "--resume", "auto")  # nothing there: starts
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert sha256(run / "model.safetensors") == sha256(tmp_path / "fresh" / "model.safetensors")
    assert load_checkpoint(checkpoint)["step"] == steps


def test_a_second_process_on_a_run_folder_is_refused_and_the_folder_kept(tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(capsys, *TRAIN, "--steps", 3, "--out", run)[0] == 0
    before = sha256(run / "model.safetensors")
    holder = hold_lock(run)
    try:
        for mode in ("--resume", "--overwrite"):
            assert_one_line_error(*run_cli(capsys, *TRAIN, "--steps", 6, "--out", run, mode)[::2],
                                  f"run folder {run} is in use by another genrep process")
    finally:
        holder.kill()
        holder.wait()
    assert sha256(run / "model.safetensors") == before and (run / "config.yaml").is_file()
    assert run_cli(capsys, *TRAIN, "--steps", 6, "--out", run, "--resume")[0] == 0  # the lock went with its holder


def test_resume_auto_restarts_a_run_stopped_before_its_first_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    assert run_cli(capsys, *TRAIN, "--steps", 3, "--out", run)[0] == 0
    (run / "checkpoints" / "last.ckpt").unlink()
    (run / "model.safetensors").unlink()  # as if killed with SIGKILL before the first checkpoint
    code, out, err = run_cli(capsys, *TRAIN, "--steps", 3, "--out", run, "--resume", "auto")
    assert code == 0, err
    assert checkpoint_step(run / "checkpoints" / "last.ckpt") == 3


def fake_scontrol(tmp_path: Path, requeue: int) -> Path:
    """A `scontrol` on PATH that answers `show job` with Requeue=`requeue` and logs every call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "scontrol"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'calls.txt'}\n"
                      f"[ \"$1\" = show ] && echo 'JobId=77 Requeue={requeue} Restarts=0'\nexit 0\n")
    script.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize("allowed", [1, 0])
def test_under_slurm_rank_zero_requeues_a_job_that_allows_it(tmp_path, monkeypatch, allowed):
    monkeypatch.setenv("PATH", f"{fake_scontrol(tmp_path, allowed)}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    with preemptible():
        os.kill(os.getpid(), signal.SIGUSR1)
        assert received_signal() == "SIGUSR1"
        error = preempted("writing the checkpoint at step 9", "continue with --resume")
        message = str(error)
        assert error.with_hint("run it again") == message.replace("continue with --resume", "run it again")
        assert "requeue" not in str(preempted("x", "y", rank_zero=False))
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert message.startswith("stopped by SIGUSR1 after writing the checkpoint at step 9; continue with --resume")
    if allowed:
        assert message.endswith("; SLURM job 77 requeued") and calls == ["show job 77", "requeue 77", "show job 77",
                                                                          "requeue 77"][:len(calls)]
        assert "requeue 77" in calls
    else:
        assert "requeued" not in message and "requeue 77" not in calls
    assert received_signal() is None  # the handlers and the flag are gone after the block


def test_a_continual_run_stopped_between_tasks_resumes_to_the_uninterrupted_result(tmp_path, capsys, monkeypatch):
    from genrep.continual.baselines import ExperienceReplay

    args = ("continual", "er", "--scenario", "split-digits", "--no-progress")
    assert run_cli(capsys, *args, "--out", tmp_path / "whole")[0] == 0
    learn = ExperienceReplay.learn

    def learn_then_signal(self, task):
        learn(self, task)
        if task.index == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(ExperienceReplay, "learn", learn_then_signal)
    code, out, err = run_cli(capsys, *args, "--out", tmp_path / "cut")
    assert code == PREEMPTED_EXIT_CODE, err
    assert "stopped by SIGTERM after task 2/5 and its checkpoint" in err and "--resume" in err
    monkeypatch.setattr(ExperienceReplay, "learn", learn)
    assert json.loads((tmp_path / "cut" / "seed0" / "results.json").read_text())["tasks_finished"] == 2
    assert run_cli(capsys, *args, "--out", tmp_path / "cut", "--resume", "auto")[0] == 0
    whole, cut = (json.loads((tmp_path / f / "seed0" / "results.json").read_text()) for f in ("whole", "cut"))
    assert whole["matrices"] == cut["matrices"]
    states = [load_checkpoint(tmp_path / f / "seed0" / "checkpoint.pt")["learner"] for f in ("whole", "cut")]
    flat = [json.dumps(s, default=lambda t: t.tolist(), sort_keys=True) for s in states]
    assert flat[0] == flat[1]


def test_a_continual_seed_folder_in_use_is_refused(tmp_path, capsys):
    assert run_cli(capsys, "continual", "finetune", "--scenario", "split-digits", "--no-progress", "--out",
                   tmp_path / "c")[0] == 0
    holder = hold_lock(tmp_path / "c" / "seed0")
    try:
        assert_one_line_error(*run_cli(capsys, "continual", "finetune", "--scenario", "split-digits",
                                       "--no-progress", "--out", tmp_path / "c", "--resume")[::2],
                              "continual seed folder", "is in use by another genrep process")
    finally:
        holder.kill()
        holder.wait()


def test_sigusr1_to_rank_zero_of_two_processes_stops_both_at_one_step(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "genrep", *TRAIN, "--steps", "1000000", "--devices", "2", "--out",
                             str(run)], env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not checkpoint.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)  # rank 0 only: rank 1 learns it through the all-reduced flag
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT_CODE, err[-2000:]
    stopped_at = checkpoint_step(checkpoint)
    assert f"stopped by SIGUSR1 after writing the checkpoint at step {stopped_at}" in err
    assert f"stopped by a stop signal on another rank after writing the checkpoint at step {stopped_at}" in err
    resumed = genrep(*TRAIN, "--steps", stopped_at + 4, "--devices", 2, "--out", run, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert checkpoint_step(checkpoint) == stopped_at + 4


def test_a_stopped_reproduce_cell_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    from genrep.experiments import train as T
    from genrep.experiments.reproduce.common import train_or_reuse
    from genrep.training.preemption import Preempted

    raw = {"model_name": "vae", "data": {"name": "digits"},
           "train": {"steps": 8, "sample_every": 2, "checkpoint_every": 100, "progress": False}}
    grid_hook = T.sample_grid_hook

    def hook_that_signals(*args, **kwargs):
        inner = grid_hook(*args, **kwargs)

        def hook(state):
            inner(state)
            if state.step == 4:
                os.kill(os.getpid(), signal.SIGTERM)
        return hook

    monkeypatch.setattr(T, "sample_grid_hook", hook_that_signals)
    with pytest.raises(Preempted, match="at step 5"):
        train_or_reuse(raw, tmp_path / "cell")
    monkeypatch.setattr(T, "sample_grid_hook", grid_hook)
    assert checkpoint_step(tmp_path / "cell" / "checkpoints" / "last.ckpt") == 5
    first_segment = (tmp_path / "cell" / "samples" / "step_000002.png").stat().st_mtime_ns
    assert train_or_reuse(raw, tmp_path / "cell")["steps"] == 8
    assert (tmp_path / "cell" / "samples" / "step_000002.png").stat().st_mtime_ns == first_segment  # not retrained
    assert json.loads((tmp_path / "cell" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 8
    train_or_reuse(raw, tmp_path / "whole")
    assert sha256(tmp_path / "cell" / "model.safetensors") == sha256(tmp_path / "whole" / "model.safetensors")
