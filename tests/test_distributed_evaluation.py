"""`genrep evaluate --devices 2`: two CPU processes (gloo), each extracting the features of its block
of whole batches, give the 1-process metrics (FID to float64 round-off, the others exactly)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from genrep.cli.main import main
from genrep.data import load_dataset
from genrep.errors import ConfigError, InputError
from genrep.experiments.distributed_features import _on_every_rank, batch_blocks
from genrep.experiments.evaluate import FEATURE_BATCH, evaluate

WORKER = Path(__file__).with_name("distributed_eval_worker.py")
LAUNCHER_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK")
needs_gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed gloo is unavailable")


def run_python(cwd: Path, *argv: str) -> str:
    """`python ARGV` in `cwd` with one thread and no launcher variables; its stdout (all ranks)."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A folder with net.pt (a TorchScript random conv net: 8×8 images -> 24 features) and fake.npz
    (300 noisy digits, uint8)."""
    folder = tmp_path_factory.mktemp("evalddp")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.Tanh(), torch.nn.Conv2d(8, 16, 3), torch.nn.Tanh(),
                              torch.nn.Flatten(), torch.nn.Linear(256, 24))
    with warnings.catch_warnings():  # torch 2.10+ deprecates TorchScript; genrep still reads it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(net), str(folder / "net.pt"))
    digits = load_dataset("digits", "train").images[:300].numpy()
    noisy = np.clip(digits + np.random.default_rng(0).normal(0, 0.3, digits.shape), 0, 1)
    np.savez(folder / "fake.npz", images=(noisy * 255).round().astype(np.uint8))
    return folder


def assert_same_metrics(one: dict, two: dict, *, fid_keys: tuple[str, ...] = ("fid",)) -> None:
    """FID from merged sums: relative difference < 1e-9; every other entry identical."""
    assert set(one) == set(two)
    for key in fid_keys:
        assert one[key] > 0 and abs(two[key] - one[key]) < 1e-9 * one[key], (key, one[key], two[key])
    assert {k: v for k, v in one.items() if k not in fid_keys} == {k: v for k, v in two.items() if k not in fid_keys}


@needs_gloo
def test_two_processes_give_the_one_process_metrics(inputs):
    """n = 210: 5 batches of 50 (the last 10), 3 on rank 0 and 2 on rank 1."""
    assert [len(b) for b in batch_blocks(210, 2)] == [150, 60]
    results, outputs = {}, {}
    for world in (1, 2):
        outputs[world] = run_python(inputs, "-m", "genrep", "evaluate", "--real", "digits", "--fake", "fake.npz",
                                    "--features", "net.pt", "--metrics", "fid,kid,prd,ipr,sinkhorn", "--n", "210",
                                    "--no-progress", "-o", f"w{world}.json", *(["--devices", "2"] if world > 1 else []))
        results[world] = json.loads((inputs / f"w{world}.json").read_text())
    assert_same_metrics(results[1], results[2])
    assert {"prd_precision", "prd_recall", "precision", "recall"} <= set(results[2])
    assert outputs[2].count("wrote ") == 1 and outputs[2].count("prd_precision") == 1  # rank 0 alone prints


@needs_gloo
def test_sfid_and_inception_score_gather_spatial_features_and_logits(inputs):
    """n = 40 is one batch: rank 1 has no rows and still takes part in every collective."""
    assert [len(b) for b in batch_blocks(40, 2)] == [40, 0]
    out = inputs / "worker"
    out.mkdir()
    run_python(inputs, str(WORKER), "fake.npz", "40", str(out))
    one, two = (json.loads((out / f"{name}.json").read_text()) for name in ("one", "two"))
    assert {"sfid", "is", "prd_recall", "recall", "sinkhorn"} <= set(two)
    assert_same_metrics(one, two)


def test_a_run_folder_over_several_processes_is_refused_before_launching(capsys, tmp_path):
    from conftest import assert_one_line_error

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: {name: vae}\n")
    code = main(["evaluate", "--real", "digits", "--fake", str(run), "--devices", "2", "--no-progress"])
    assert_one_line_error(code, capsys.readouterr().err, f"genrep sample {run} -n N --out DIR --devices 2",
                          "genrep evaluate --real digits --fake DIR --devices 2")
    assert not (run / "eval_digits.json").exists()
    two_ranks = types.SimpleNamespace(world_size=2, global_rank=0, is_global_zero=True)
    with pytest.raises(ConfigError, match="sample it in shards first"):
        evaluate("digits", str(run), metrics=["fid"], fabric=two_ranks)


@pytest.mark.parametrize("n_rows, world, batches", [
    (210, 2, [3, 2]), (297, 2, [3, 3]), (1000, 7, [3, 3, 3, 3, 3, 3, 2]), (51, 4, [1, 1, 0, 0]),
    (40, 3, [1, 0, 0]), (0, 2, [0, 0]), (50, 1, [1]), (499, 3, [4, 3, 3])])
def test_batch_blocks_deal_whole_batches_in_row_order(n_rows, world, batches):
    blocks = batch_blocks(n_rows, world)
    assert [i for block in blocks for i in block] == list(range(n_rows))  # every row once, in rank order
    assert [-(-len(block) // FEATURE_BATCH) for block in blocks] == batches
    for block in blocks:
        assert block.start % FEATURE_BATCH == 0 or not len(block)
        assert block.stop % FEATURE_BATCH == 0 or block.stop == n_rows
    with pytest.raises(InputError):
        batch_blocks(n_rows, 0)


def test_a_failure_on_one_rank_is_raised_on_every_rank():
    def ranks(failed):  # a fabric of len(failed) ranks whose all_gather reports these failures
        return types.SimpleNamespace(all_gather=lambda t: torch.tensor([[float(f)] for f in failed]))

    assert _on_every_rank(ranks([0, 0]), lambda: 7, "work") == 7
    with pytest.raises(ConfigError, match="work failed on rank 1, 2; see the error message of that rank"):
        _on_every_rank(ranks([0, 1, 1]), lambda: 7, "work")

    def fail():
        raise InputError("bad batch")

    with pytest.raises(InputError, match="bad batch"):
        _on_every_rank(ranks([1, 0]), fail, "work")
