"""Data-parallel continual learning (`genrep continual METHOD --devices N`, genrep.continual.distributed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from conftest import assert_one_line_error, run_cli
from genrep.continual import classifier as C
from genrep.continual import distributed
from test_sharded_sampling import clean_env, genrep

WORKER = Path(__file__).parents[1] / "continual_ddp_worker.py"
needs_gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed gloo is unavailable")


@pytest.mark.parametrize("size", [1, 2, 3])
def test_the_ranks_rows_cover_every_row_once(monkeypatch, size):
    parts = []
    for rank in range(size):
        monkeypatch.setattr(distributed, "world", lambda rank=rank: (rank, size))
        parts.append(distributed.rows_of_rank(4, 11))
        assert len(distributed.rows_of_rank(5, 5)) == 0
    assert sorted(torch.cat(parts).tolist()) == list(range(4, 11))


@pytest.mark.parametrize("ratio", [None, 0.3])
def test_the_ranks_loss_shares_add_up_to_the_full_batch_loss(monkeypatch, ratio):
    torch.manual_seed(0)
    model = C.build_classifier("mlp", (1, 8, 8), 10)
    x = torch.rand(13, 1, 8, 8)
    target = torch.softmax(torch.randn(13, 10), 1)
    k, weights = 8, torch.linspace(0.5, 2.0, 8)
    full = C._batch_loss(model, x, target, k, None, "ce", 2.0, weights, ratio)
    shares = []
    for rank in range(3):
        monkeypatch.setattr(distributed, "world", lambda rank=rank: (rank, 3))
        rows = torch.cat([distributed.rows_of_rank(0, k), distributed.rows_of_rank(k, len(x))])
        new = rows < k
        shares.append(C._batch_loss(model, x[rows], target[rows], int(new.sum()), None, "ce", 2.0,
                                    weights[rows[new]], ratio, counts=(k, len(x) - k)))
    assert torch.allclose(sum(shares), full, rtol=1e-6)


@needs_gloo
def test_two_process_fit_classifier_takes_the_one_process_steps(tmp_path):
    """Replay, per-sample weights, distillation temperature, active classes, replay ratio and SGD (whose
    step is proportional to the gradient, unlike Adam's): 2 processes must follow the 1-process run."""
    proc = subprocess.run([sys.executable, str(WORKER), str(tmp_path)], env=clean_env(), capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for name, tensor in rank0["model"].items():
        assert torch.equal(tensor, rank1["model"][name]), name  # the ranks stay identical
        assert torch.allclose(tensor, rank0["reference"][name], atol=1e-6), name
        assert not torch.equal(tensor, torch.zeros_like(tensor))
    assert rank0["history"] == pytest.approx(rank0["reference_history"], rel=1e-6)
    assert rank0["history"] == rank1["history"]


@needs_gloo
def test_the_continual_runner_on_two_processes_records_them_and_stays_close_to_one(tmp_path, capsys):
    args = ("continual", "er", "--scenario", "split-digits", "--no-progress")
    assert run_cli(capsys, *args, "--out", tmp_path / "one")[0] == 0
    done = genrep(*args, "--out", tmp_path / "two", "--devices", 2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("average accuracy") == 1  # rank 0 alone prints
    assert json.loads((tmp_path / "two" / "config.json").read_text())["processes"] == 2
    one, two = (json.loads((tmp_path / f / "summary.json").read_text())["average_accuracy_percent"]["mean"]
                for f in ("one", "two"))
    # batch norm on half batches and other dropout masks: close, not equal (benchmarks/RESULTS.md)
    assert abs(one - two) < 10, (one, two)
    assert_one_line_error(*run_cli(capsys, *args, "--out", tmp_path / "two", "--resume")[::2], "--devices 2")


def test_a_learner_that_cannot_train_data_parallel_is_refused_before_any_process_starts(tmp_path, capsys):
    assert_one_line_error(*run_cli(capsys, "continual", "multiband", "--scenario", "split-digits", "--devices", 2,
                                   "--out", tmp_path / "mb")[::2],
                          "multiband cannot run on 2 processes", "--devices 1")
    assert not (tmp_path / "mb").exists()
