"""Sharded sampling (`genrep sample RUN -n N --out DIR`): many images, over any number of processes,
resumable, identical whatever the number of processes (the workflow of NVlabs/edm's generate.py).

Sample indices 0..n−1 are cut into shards of `shard_size`; shard k holds indices
[k·S, min((k+1)·S, n)) and is drawn by one `model.sample` call after
`torch.manual_seed(shard_seed(seed, k))`, so its images depend on (run, seed, S, k) only, not on
the rank that draws it nor on how many ranks there are. Rank r of W draws shards r, r+W, r+2W, …
that are not on disk yet. Conditional models get balanced conditions: class label i mod K for
index i, or for vector conditions (particle attributes) row i mod M of the run's test split.

DIR layout:
  sampling.json        the job (run, weights sha256, seed, n, shard_size, format, model overrides),
                       written first by rank 0; a rerun must match it (else a one-line error)
  shard_000000.npz     images uint8 N×C×H×W (value range mapped to 0..255), `index` int64, and
                       `labels` int64 or `conditions` float32 for a conditional model; or, with
                       format "png", the folder shard_000000/ of 000000.png … (named by index)
  manifest.json        written by rank 0 once every shard exists: shard names, counts and sha256

Each shard is written atomically (npz through a temp file; a PNG shard folder under a temp name
then renamed), so an interrupted job (Ctrl-C, SIGTERM, a killed node) leaves only whole shards and
the same command completes the missing ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genrep.errors import ConfigError, DataError, InputError, one_line
from genrep.runs import read_json, write_json
from genrep.utils.files import write_npz
from genrep.utils.locks import locked_on_rank_zero

JOB, MANIFEST = "sampling.json", "manifest.json"
FORMATS = ("npz", "png")
DEFAULT_SHARD_SIZE = 500


def shard_seed(seed: int, shard: int) -> int:
    """The torch seed of shard `shard` of a job seeded `seed`: a 63-bit hash of both (numpy's
    SeedSequence), so neighbouring shards and seeds get unrelated noise."""
    return int(np.random.SeedSequence([seed, shard]).generate_state(2, np.uint32).astype(np.uint64)
               @ np.array([1 << 31, 1], dtype=np.uint64))


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """n images in shards of `shard_size`."""

    n: int
    shard_size: int = DEFAULT_SHARD_SIZE

    def __post_init__(self) -> None:
        for name, value in (("-n", self.n), ("--shard-size", self.shard_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")

    @property
    def num_shards(self) -> int:
        return -(-self.n // self.shard_size)

    def indices(self, shard: int) -> range:
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, self.n))

    def of_rank(self, rank: int, world_size: int) -> list[int]:
        """The shards rank `rank` of `world_size` draws (round robin)."""
        return list(range(rank, self.num_shards, world_size))


def shard_name(shard: int, fmt: str) -> str:
    return f"shard_{shard:06d}" + (".npz" if fmt == "npz" else "")


def weights_digest(run_dir: str | Path) -> str:
    """sha256 of RUN/model.safetensors (hex), which names the exact model a shard folder came from."""
    digest = hashlib.sha256()
    with open(Path(run_dir) / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def job_record(run_dir: str | Path, plan: ShardPlan, *, seed: int, fmt: str, model_overrides: dict[str, Any],
               image_shape: tuple[int, ...]) -> dict[str, Any]:
    """What `sampling.json` holds for this job (compared on every rerun)."""
    return {"run": str(Path(run_dir).resolve()), "weights_sha256": weights_digest(run_dir), "seed": seed,
            "n": plan.n, "shard_size": plan.shard_size, "format": fmt, "model_overrides": model_overrides,
            "image_shape": list(image_shape)}


def check_job(out: Path, record: dict[str, Any]) -> None:
    """Refuse an `out` that holds another job or other files, naming what differs and the fix."""
    job = out / JOB
    if not job.is_file():
        if out.is_dir() and any(out.iterdir()):
            raise ConfigError(f"--out {out} is not empty and holds no {JOB}: it is not a sampling folder; give an "
                              "empty or new folder")
        return
    stored = read_json(job, what="sampling job")
    if not isinstance(stored, dict):
        raise ConfigError(f"sampling job {job} is corrupted: it holds no JSON object; remove {out} and sample again")
    if stored.get("run") != record["run"] or stored.get("weights_sha256") != record["weights_sha256"]:
        raise ConfigError(f"{out} holds shards of another run ({stored.get('run')}, weights sha256 "
                          f"{str(stored.get('weights_sha256'))[:12]}…), not of {record['run']}; use another --out")
    if stored.get("n") != record["n"]:
        raise ConfigError(f"{out} holds a sampling job of -n {stored.get('n')}, not -n {record['n']}; pass -n "
                          f"{stored.get('n')} to complete it, or use another --out")
    if stored.get("seed") != record["seed"]:
        raise ConfigError(f"{out} holds shards drawn with --seed {stored.get('seed')}, not --seed {record['seed']};"
                          f" pass --seed {stored.get('seed')} to complete them, or use another --out")
    differing = [f"{k} ({stored.get(k)!r} → {record[k]!r})" for k in record if stored.get(k) != record[k]]
    if differing:
        raise ConfigError(f"{out} holds a sampling job that differs in {'; '.join(differing)}; rerun it with its"
                          " settings or use another --out")


def shard_conditions(model, plan: ShardPlan, shard: int, test_conditions: torch.Tensor | None) -> torch.Tensor | None:
    """Balanced conditions of a shard's indices: labels i mod K, or rows i mod M of the test conditions."""
    condition = getattr(model, "condition", None)
    index = torch.tensor(list(plan.indices(shard)))
    if condition is not None and condition.num_classes is not None:
        return index % condition.num_classes
    if getattr(model, "conditional", False) and condition is None:  # e.g. a class-conditional DDGM
        return index % model.num_classes
    if test_conditions is not None:
        return test_conditions[index % len(test_conditions)]
    return None


@torch.no_grad()
def draw_shard(model, plan: ShardPlan, shard: int, *, seed: int, device, test_conditions=None) -> dict[str, np.ndarray]:
    """The arrays of one shard: `images` uint8 N×C×H×W, `index`, and `labels` / `conditions`."""
    from genrep.data.transforms import rescale

    cond = shard_conditions(model, plan, shard, test_conditions)
    torch.manual_seed(shard_seed(seed, shard))  # also seeds every CUDA device
    count = len(plan.indices(shard))
    images = model.sample(count, None if cond is None else cond.to(device)).float().cpu()
    unit = rescale(images, model.value_range, (0.0, 1.0)).clamp_(0.0, 1.0)
    arrays = {"images": (unit * 255.0).round_().to(torch.uint8).numpy(),
              "index": np.asarray(plan.indices(shard), dtype=np.int64)}
    if cond is not None:
        key = "conditions" if cond.dtype.is_floating_point else "labels"
        arrays[key] = cond.cpu().numpy()
    return arrays


def write_shard(out: Path, shard: int, arrays: dict[str, np.ndarray], fmt: str) -> Path:
    """Write one shard atomically (npz via a temp file; a PNG folder built under a temp name, then renamed)."""
    path = out / shard_name(shard, fmt)
    if fmt == "npz":
        return write_npz(path, **arrays)
    from PIL import Image

    from genrep.utils.files import writing

    tmp = out / f".{path.name}.{os.getpid()}.tmp"
    with writing(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for i, image in zip(arrays["index"], arrays["images"]):
            pixels = image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))
            Image.fromarray(pixels).save(tmp / f"{int(i):06d}.png")
        os.replace(tmp, path)
    return path


def missing_shards(out: Path, plan: ShardPlan, fmt: str) -> list[int]:
    return [k for k in range(plan.num_shards) if not (out / shard_name(k, fmt)).exists()]


def file_digest(path: Path) -> str:
    """sha256 of a file, or of a PNG shard folder's files in name order."""
    digest = hashlib.sha256()
    for file in sorted(path.iterdir()) if path.is_dir() else [path]:
        digest.update(file.read_bytes())
    return digest.hexdigest()


def write_manifest(out: Path, record: dict[str, Any], plan: ShardPlan) -> dict[str, Any]:
    """manifest.json: the job and, per shard, its name, first index, count and sha256."""
    fmt = record["format"]
    shards = [{"name": shard_name(k, fmt), "start": plan.indices(k).start, "count": len(plan.indices(k)),
               "sha256": file_digest(out / shard_name(k, fmt))} for k in range(plan.num_shards)]
    manifest = {**record, "num_shards": plan.num_shards, "shards": shards}
    write_json(out / MANIFEST, manifest)
    return manifest


def is_shard_folder(path: Path) -> bool:
    return path.is_dir() and (path / JOB).is_file()


def load_shards(folder: str | Path) -> torch.Tensor:
    """The images of a finished sharded-sampling folder in index order, float32 N×C×H×W in [0, 1].
    DataError when shards are missing (naming them and the command that completes them)."""
    from genrep.data.convert import decode_image

    folder = Path(folder)
    job = read_json(folder / JOB, what="sampling job")
    plan, fmt = ShardPlan(job["n"], job["shard_size"]), job["format"]
    missing = missing_shards(folder, plan, fmt)
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "")
        raise DataError(f"{folder} is an unfinished sampling job: {len(missing)} of {plan.num_shards} shards are "
                        f"missing ({shown}); complete it with genrep sample {job['run']} -n {job['n']} --seed "
                        f"{job['seed']} --shard-size {job['shard_size']} --format {fmt} --out {folder}")
    mode = "L" if job["image_shape"][0] == 1 else "RGB"
    chunks = []
    for k in range(plan.num_shards):
        path = folder / shard_name(k, fmt)
        if fmt == "npz":
            try:
                with np.load(path) as arrays:
                    pixels = arrays["images"]
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
                raise DataError(f"shard {path} is corrupted ({one_line(err)}); delete it and run the sampling "
                                "command again, which redraws it") from None
        else:  # HW (gray) or HWC pages, back to N×C×H×W
            pages = np.stack([np.asarray(decode_image(f, mode, label=str(f))) for f in sorted(path.iterdir())])
            pixels = pages[:, None] if pages.ndim == 3 else np.transpose(pages, (0, 3, 1, 2))
        if len(pixels) != len(plan.indices(k)) or tuple(pixels.shape[1:]) != tuple(job["image_shape"]):
            raise DataError(f"shard {path} holds {len(pixels)} images of {'×'.join(map(str, pixels.shape[1:]))}, not "
                            f"{len(plan.indices(k))} of {'×'.join(map(str, job['image_shape']))}; delete it and run "
                            "the sampling command again")
        chunks.append(torch.from_numpy(pixels.astype(np.float32) / 255.0))
    return torch.cat(chunks)


def sample_shards(run_dir: str | Path, out: str | Path, plan: ShardPlan, *, seed: int = 0, fmt: str = "npz",
                  model_overrides: dict[str, Any] | None = None, fabric=None, progress: bool = True,
                  log=print) -> dict[str, Any]:
    """Draw the missing shards of the job (`run_dir`, `plan`, `seed`, `fmt`) into `out` on this
    rank of `fabric` (None: one process); returns {"written", "skipped": shards over all ranks,
    "manifest": on rank 0}.
    Between shards a SIGTERM/SIGUSR1 (inside `preemptible()`) stops every rank with `Preempted`."""
    from tqdm.auto import tqdm

    from genrep.experiments.train import load_data, load_run_config, load_trained_model
    from genrep.training.preemption import preempted, stop_requested

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    rank, world = (0, 1) if fabric is None else (fabric.global_rank, fabric.world_size)
    overrides = model_overrides or {}
    model = load_trained_model(run_dir, model_overrides=overrides)
    record = job_record(run_dir, plan, seed=seed, fmt=fmt, model_overrides=overrides, image_shape=model.image_shape)
    condition = getattr(model, "condition", None)
    test_conditions = None
    if condition is not None and condition.num_classes is None:
        test_conditions = load_data(load_run_config(run_dir), "test").conditions
    device = torch.device("cpu") if fabric is None else fabric.device
    model = model.to(device)
    check_job(out, record)  # on every rank (they read the same files): all fail alike, none waits for another
    _barrier(fabric)
    with locked_on_rank_zero(out, what="sampling folder"):
        if rank == 0 and not (out / JOB).is_file():
            write_json(out / JOB, record)
        _barrier(fabric)
        mine = plan.of_rank(rank, world)
        todo = [k for k in mine if not (out / shard_name(k, fmt)).exists()]
        written = 0
        bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc=f"sample rank {rank}", unit="shard",
                   disable=not progress, dynamic_ncols=True)
        rounds = -(-plan.num_shards // world)  # the same count on every rank, for the collective stop check
        try:
            for step in range(rounds):
                shard = step * world + rank
                if shard < plan.num_shards and not (out / shard_name(shard, fmt)).exists():
                    write_shard(out, shard, draw_shard(model, plan, shard, seed=seed, device=device,
                                                       test_conditions=test_conditions), fmt)
                    written += 1
                    bar.update()
                if step + 1 < rounds and stop_requested():
                    raise preempted(f"writing {written} shard(s) on rank {rank}",
                                    "run the same command again: the finished shards are kept and skipped",
                                    rank_zero=rank == 0)
        finally:
            bar.close()
        total = _sum_over_ranks(fabric, written)
        missing = missing_shards(out, plan, fmt)
        if missing:
            raise DataError(f"{len(missing)} shards are still missing in {out} ({missing[:10]}); run the same "
                            "command again")
        manifest = write_manifest(out, record, plan) if rank == 0 else None
        _barrier(fabric)
    if log is not None and rank == 0:
        log(f"wrote {total} shard(s) of {plan.num_shards} over {world} process(es); the others were on disk")
    return {"written": total, "skipped": plan.num_shards - total, "manifest": manifest}


def _sum_over_ranks(fabric, count: int) -> int:
    """`count` summed over all ranks (a collective: also the barrier before the shards are checked)."""
    if fabric is None or fabric.world_size == 1:
        return count
    return int(fabric.all_reduce(torch.tensor([float(count)], device=fabric.device), reduce_op="sum").item())


def _barrier(fabric) -> None:
    if fabric is not None and fabric.world_size > 1:
        fabric.barrier()
