"""The evaluation job behind `genrep evaluate`: real split vs generated images, pinned protocol.

Protocol (see docs/evaluation.md): real images come from `load_dataset(name, split)` in [0, 1];
fake images come from a run folder (sampled here with a fixed seed, mapped from the model's value
range to [0, 1]), an .npz file (`images`, uint8 or floats in [0, 1]) or a folder of images. Both
sets are cut to the same count `n` (default: the whole real split, at most 10,000), real rows
chosen by a seeded permutation. Feature metrics (fid, kid, prd, ipr, sinkhorn) use one extractor
(`lenet` per dataset, `inception`, or a TorchScript file); `is` needs the extractor's logits and
`sfid` its spatial features. The Inception's input mapping is `inception_resize` ("tf1", the TF FID
graph's, by default; "torch", pytorch-fid's, the authors' reference), named in the result whenever
Inception features are used; PRD clusters with `prd_clustering` ("minibatch", the published
protocol, by default; or "lloyd"). `channels` (calorimeter data) compares the 5 ZDC channels of raw
photon counts: the Wasserstein distance always, the paired MAE when the fake images were
generated from a run for the real particles.

Over W > 1 processes (`fabric`) the feature metrics come from `distributed_features`: every rank
extracts its block of whole batches, FID from merged sums, the others from gathered features.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from genrep.data import ImageDataset, load_dataset
from genrep.data.transforms import rescale
from genrep.errors import CheckpointError, ConfigError, DataError, UnsafeFileError
from genrep.experiments.sharded_sampling import is_shard_folder, load_shards

FEATURE_METRICS = ("fid", "kid", "prd", "ipr", "sinkhorn")
ALL_METRICS = (*FEATURE_METRICS, "is", "sfid", "channels")
DEFAULT_N_MAX = 10_000
FEATURE_BATCH = 50  # images per extractor call, whatever the number of processes


@dataclasses.dataclass
class FakeImages:
    images: torch.Tensor  # N×C×H×W in [0, 1]
    source: str
    paired: bool = False  # row i was generated for the condition of real row i


def parse_real(spec: str) -> tuple[str, str]:
    """"mnist" → ("mnist", "test"); "mnist:train" → ("mnist", "train")."""
    name, _, split = spec.partition(":")
    return name, split or "test"


def parse_metrics(spec: str) -> list[str]:
    metrics = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in ALL_METRICS]
    if unknown or not metrics:
        raise ConfigError(f"unknown metric {', '.join(unknown) or '(none given)'}; valid: {', '.join(ALL_METRICS)}")
    return metrics


def choose_real(real: ImageDataset, n: int | None, seed: int) -> ImageDataset:
    n = min(len(real), DEFAULT_N_MAX) if n is None else n
    if n < 2 or n > len(real):
        raise ConfigError(f"--n must be between 2 and {len(real)} (the size of {real.name}[{real.split}]), got {n}")
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))[:n]
    return real.subset(order)


def load_fake(source: str, real: ImageDataset, *, seed: int) -> FakeImages:
    """Fake images for `real` (same count, shape and [0, 1] range) from a run folder, .npz or folder."""
    path = Path(source)
    if not path.exists():
        raise DataError(f"--fake {source} does not exist (give a run folder, an .npz file or a folder of images)")
    if path.is_dir() and (path / "config.yaml").is_file():
        return _sample_run(path, real, seed=seed)
    if is_shard_folder(path):  # `genrep sample RUN --out DIR`: every shard must be there
        images = load_shards(path)
    elif path.suffix == ".npz":
        images = load_dataset("npz", "test", path=str(path)).images
    elif path.is_dir():
        images = _read_folder(path, channels=real.image_shape[0])
    else:
        raise DataError(f"--fake {source}: expected a run folder, an .npz file or a folder of images")
    if tuple(images.shape[1:]) != tuple(real.image_shape):
        raise DataError(f"fake images in {source} are {'×'.join(map(str, images.shape[1:]))} but"
                        f" {real.name} images are {'×'.join(map(str, real.image_shape))}")
    if len(images) < len(real):
        raise DataError(f"{source} holds {len(images)} images but {len(real)} are compared; pass --n {len(images)}")
    return FakeImages(images[: len(real)], str(source))


def _read_folder(folder: Path, *, channels: int) -> torch.Tensor:
    from genrep.data.convert import decode_image, stack_images
    from genrep.data.sources.image_folder import EXTENSIONS

    if any(p.is_dir() for p in folder.iterdir()):
        return load_dataset("image_folder", "test", path=str(folder), mode="gray" if channels == 1 else "rgb").images
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS)
    mode = "L" if channels == 1 else "RGB"
    return stack_images([decode_image(f, mode, label=str(f)) for f in files], label=str(folder), names=files)


@torch.no_grad()
def _sample_run(run_dir: Path, real: ImageDataset, *, seed: int, batch_size: int = 500) -> FakeImages:
    from genrep.experiments.train import load_trained_model

    model = load_trained_model(run_dir)
    if tuple(model.image_shape) != tuple(real.image_shape):
        raise DataError(f"run {run_dir} generates {'×'.join(map(str, model.image_shape))} images but"
                        f" {real.name} images are {'×'.join(map(str, real.image_shape))}")
    condition = getattr(model, "condition", None)
    paired = condition is not None
    if condition is not None and condition.num_classes is not None and real.labels is None:
        raise DataError(f"run {run_dir} is conditioned on labels but {real.name} has none")
    if condition is not None and condition.num_classes is None and real.conditions is None:
        raise DataError(f"run {run_dir} is conditioned on vectors but {real.name} has none")
    torch.manual_seed(seed)
    chunks = []
    for start in range(0, len(real), batch_size):
        rows = slice(start, start + batch_size)
        cond = None
        if condition is not None:
            cond = real.labels[rows] if condition.num_classes is not None else real.conditions[rows]
        n = len(real.images[rows])
        chunks.append(rescale(model.sample(n, cond).float().cpu(), model.value_range, (0.0, 1.0)).clamp_(0, 1))
    return FakeImages(torch.cat(chunks), str(run_dir), paired=paired)


def evaluate(real_spec: str, fake_source: str, *, metrics: list[str], features="lenet",
             n: int | None = None, seed: int = 0, progress: bool = True, inception_resize: str = "tf1",
             prd_clustering: str = "minibatch", fabric=None) -> dict[str, Any]:
    """Compute `metrics` between `real_spec` ("name[:split]") and `fake_source`; returns a flat dict.
    `features`: "lenet", "inception", a TorchScript file, or a FeatureExtractor instance;
    `inception_resize`: "tf1" | "torch" (the "inception" extractor's input mapping);
    `prd_clustering`: "minibatch" | "lloyd" (see genrep.metrics.prd_curves);
    `fabric`: a launched Fabric (None: one process on the CPU); call on every rank, which all return
    the same dict (FID to float64 round-off, the other metrics exactly as in one process)."""
    from genrep.metrics.features.inception import RESIZES, FIDInception
    from genrep.metrics.prd_curves import CLUSTERINGS

    _check_choice("--inception-resize", inception_resize, RESIZES)  # before any data is loaded: fail fast
    _check_choice("--prd-clustering", prd_clustering, CLUSTERINGS)
    world = 1 if fabric is None else fabric.world_size
    if world > 1 and is_run_folder(fake_source):
        raise ConfigError(run_folder_refusal(fake_source, real_spec, f"--devices {world}"))
    progress = progress and (fabric is None or fabric.is_global_zero)
    name, split = parse_real(real_spec)
    real = choose_real(load_dataset(name, split, **_data_options_of_run(fake_source)), n, seed)
    _check_sample_count(metrics, len(real))  # before sampling and extracting: fail in seconds, not minutes
    fake = load_fake(fake_source, real, seed=seed)
    result: dict[str, Any] = {"real": f"{name}:{split}", "fake": fake.source, "n": len(real), "seed": seed}
    kinds = _feature_kinds(metrics)
    if kinds:
        extractor = resolve_extractor(features, name, real.images[:2], inception_resize=inception_resize)
        if fabric is not None:
            extractor = extractor.to(fabric.device)
        result["features"] = extractor.name
        if isinstance(extractor, FIDInception):
            result["inception_resize"] = extractor.resize
        if "prd" in metrics:
            result["prd_clustering"] = prd_clustering
        real_kinds = tuple(k for k in kinds if k != "logits")  # IS needs the generated images only
        if world > 1:
            from genrep.experiments.distributed_features import distributed_feature_metrics

            result.update(distributed_feature_metrics(fabric, metrics, extractor, real.images, fake.images,
                                                      real_kinds, kinds, progress=progress, seed=seed,
                                                      prd_clustering=prd_clustering))
        else:
            f_real = extractor.features(real.images, batch_size=FEATURE_BATCH, progress=progress,
                                        kind=real_kinds) if real_kinds else {}
            f_fake = extractor.features(fake.images, batch_size=FEATURE_BATCH, progress=progress, kind=kinds)
            result.update(_feature_metrics(metrics, f_real, f_fake, seed=seed, prd_clustering=prd_clustering))
    if "channels" in metrics:  # cheap and deterministic: every rank computes the same values
        result.update(_channel_metrics(real, fake))
    return result


def is_run_folder(source: str | Path) -> bool:
    """Whether `--fake source` is a training run (sampled inside `evaluate`, by one process)."""
    path = Path(source)
    return path.is_dir() and (path / "config.yaml").is_file()


def run_folder_refusal(run: str, real_spec: str, processes: str, n: int | None = None) -> str:
    """The one-line refusal of `--fake RUN` over several processes (`processes`: e.g. "--devices 2"),
    with the two commands that do it: shard-sample, then evaluate the shard folder."""
    count = "N" if n is None else str(n)
    return (f"--fake {run} is a run folder, which evaluate samples in one process; with {processes} sample it in "
            f"shards first: genrep sample {run} -n {count} --out DIR {processes}, then genrep evaluate --real "
            f"{real_spec} --fake DIR {processes}")


def _check_choice(flag: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{flag} must be one of {', '.join(valid)}; got {value!r}")


def _check_sample_count(metrics: list[str], n: int) -> None:
    from genrep.metrics.kernel_distance import MIN_SUBSET_SIZE

    if "kid" in metrics and n < MIN_SUBSET_SIZE:
        raise ConfigError(f"metric kid needs at least {MIN_SUBSET_SIZE} images per set, got --n {n}; pass"
                          f" --n {MIN_SUBSET_SIZE} or more, or drop kid from --metrics")


def _feature_kinds(metrics: list[str]) -> tuple[str, ...]:
    """Which extractor outputs the metrics need: pool features, spatial features (sFID), logits (IS)."""
    kinds = []
    if any(m in FEATURE_METRICS for m in metrics):
        kinds.append("features")
    if "sfid" in metrics:
        kinds.append("spatial")
    if "is" in metrics:
        kinds.append("logits")
    return tuple(kinds)


def resolve_extractor(features, dataset: str, probe: torch.Tensor, *, inception_resize: str = "tf1"):
    """`lenet` (trained on `dataset`), `inception` (with input mapping `inception_resize`), a
    TorchScript file mapping [0, 1] images to N×D features (D read off a probe batch), or a
    FeatureExtractor passed as it is."""
    from genrep.metrics import FeatureExtractor, get_extractor, wrap_module

    if isinstance(features, FeatureExtractor):
        return features
    if features == "inception":
        return get_extractor(features, resize=inception_resize)
    if features == "lenet":
        return get_extractor(features, dataset=dataset)
    path = Path(features)
    if not path.is_file():
        looks_like_a_path = path.suffix or len(path.parts) > 1
        if looks_like_a_path:
            problem = "is a folder, not a file" if path.is_dir() else "does not exist"
            raise ConfigError(f"--features {features} {problem}: give a TorchScript file, lenet or inception")
        raise ConfigError(f"--features must be lenet, inception or a TorchScript file; {features} is none of these")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as exc:
        from genrep.utils.safe_load import load_torch

        try:  # a torch.save file? a pickled nn.Module holds code objects and is refused for safety
            load_torch(path, label=f"--features {features}")
        except UnsafeFileError as err:
            raise UnsafeFileError(f"{err}; save the network with torch.jit.save(torch.jit.script(net), PATH)"
                                  " instead") from None
        except CheckpointError:
            pass
        raise ConfigError(f"--features {features} is not a TorchScript file (torch.jit.save a traced or "
                          f"scripted module): {str(exc).splitlines()[0]}") from None
    with torch.no_grad():
        dim = module(probe.float()).flatten(1).shape[1]
    return wrap_module(module, path.stem, dim)


def _feature_metrics(metrics: list[str], f_real: dict, f_fake: dict, *, seed: int,
                     prd_clustering: str = "minibatch") -> dict[str, float]:
    from genrep import metrics as M

    out: dict[str, float] = {}
    if "fid" in metrics:
        out["fid"] = M.fid(f_real["features"], f_fake["features"])
    if "kid" in metrics:
        out["kid"], out["kid_std"] = M.kid(f_real["features"], f_fake["features"], seed=seed)
    if "prd" in metrics:
        out["prd_precision"], out["prd_recall"] = M.prd(real=f_real["features"], fake=f_fake["features"], seed=seed,
                                                        clustering=prd_clustering)
    if "ipr" in metrics:
        out["precision"], out["recall"] = M.improved_precision_recall(real=f_real["features"],
                                                                      fake=f_fake["features"], k=3)
    if "sinkhorn" in metrics:
        m = min(len(f_real["features"]), M.sinkhorn.RECOMMENDED_SAMPLES)
        out["sinkhorn"] = M.sinkhorn_divergence(f_real["features"][:m], f_fake["features"][:m])
    if "sfid" in metrics:
        out["sfid"] = M.fid(f_real["spatial"], f_fake["spatial"])
    if "is" in metrics:
        out["is"], out["is_std"] = M.inception_score(f_fake["logits"])
    return out


def _data_options_of_run(fake_source: str) -> dict[str, Any]:
    """A run trained on padded/resized images (or on a local file) is compared with real images
    padded/resized the same way (from the same file)."""
    path = Path(fake_source)
    if is_shard_folder(path):  # `genrep sample RUN --out DIR`: the run it came from
        from genrep.runs import read_json

        run = read_json(path / "sampling.json", what="sampling job").get("run")
        if not run:
            return {}
        path = Path(run)
    if not (path.is_dir() and (path / "config.yaml").is_file()):
        return {}
    from genrep.experiments.train import load_run_config

    data = load_run_config(path).data
    return {"pad_to": data.pad_to, "image_size": data.image_size, **({"path": data.path} if data.path else {})}


def _channel_metrics(real: ImageDataset, fake: FakeImages) -> dict[str, float]:
    from genrep import metrics as M
    from genrep.data.calorimeter import to_counts

    if tuple(real.image_shape) != (1, 44, 44):
        raise ConfigError(f"metric 'channels' needs 44×44 calorimeter responses, {real.name} has"
                          f" {'×'.join(map(str, real.image_shape))}")
    real_counts = to_counts(real.images, real.value_range)
    fake_counts = to_counts(fake.images, (0.0, 1.0))
    out = {
        "channel_wasserstein_pooled_log": M.channel_wasserstein(real_counts, fake_counts, convention="pooled-log"),
        "channel_wasserstein_per_channel_raw": M.channel_wasserstein(real_counts, fake_counts,
                                                                     convention="per-channel-raw"),
    }
    if fake.paired:
        errors = M.calorimeter.channel_abs_errors(real_counts, fake_counts)
        out["channel_mae"], out["channel_mae_std"] = float(errors.mean()), float(errors.std())
    return out
