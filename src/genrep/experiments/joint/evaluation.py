"""Evaluation pieces of the joint diffusion experiments: data as the runs see it, the frozen-feature
classifier ("Ours (pre-trained DDGM)", Sec. 6.4.1), generation with every sampler of Table 6.6.2
(unconditional, classifier guidance, optimised representations) and the FID / PRD of a sample set."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from genrep.data import ImageDataset, load_dataset
from genrep.experiments.joint.settings import scale_of

GUIDANCE_SCALE = 1.0  # classifier-guidance gradient scale s (Eq. 6.12); guided-diffusion's default


def run_data(scale: str, split: str, *, dataset: str | None = None, data_path: str | None = None,
             image_size: int | None = None) -> ImageDataset:
    """A split of the scale's data set (or `dataset`) resized as the runs train on it (or to
    `image_size`), in [0, 1]."""
    s = scale_of(scale)
    options = {"path": data_path} if data_path else {}
    return load_dataset(dataset or s.dataset, split, value_range="01", image_size=image_size or s.image_size,
                        **options)


def balanced_labels(n: int, num_classes: int, device=None) -> torch.Tensor:
    """0, 1, …, K−1, 0, … (n,) int64: class-balanced targets for conditional sampling."""
    return torch.arange(n, device=device) % num_classes


@torch.no_grad()
def pooled_features(model, images: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
    """z_0 of clean images (N×C×H×W in the model's value range) through a DDGM's UNet encoder at t = 0
    (eval mode): the features of Sec. 6.4.1 → N×F on the CPU."""
    from genrep.models.ddgm import to_model_range

    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x0 = to_model_range(images[start:start + batch_size].to(model.device), model.value_range)
        t = torch.zeros(len(x0), dtype=torch.long, device=x0.device)
        out.append(model.unet.pool_features(*model.unet.encode(x0, t)).cpu())
    return torch.cat(out)


def frozen_feature_accuracy(model, train: ImageDataset, test: ImageDataset, *, epochs: int, seed: int,
                            batch_size: int = 128, lr: float = 1e-3, progress: bool = False) -> float:
    """Test accuracy of the joint model's head (`ClassifierHead`, dropout 0.7) trained with Adam on the
    frozen z_0 of a pre-trained DDGM (Table 6.6.1's "Ours (pre-trained DDGM)"). Features are computed
    once; labels −1 (unlabelled) are left out of the training set."""
    from genrep.models.pooled_classifier import ClassifierHead

    keep = train.labels >= 0
    f_train, y_train = pooled_features(model, train.images[keep]), train.labels[keep]
    f_test = pooled_features(model, test.images)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = ClassifierHead(f_train.shape[1], test.num_classes)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    for _ in tqdm(range(epochs), desc="frozen-feature head", disable=not progress, leave=False):
        head.train()
        for rows in torch.randperm(len(f_train), generator=generator).split(batch_size):
            if len(rows) < 2:  # BatchNorm needs two rows
                continue
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(head(f_train[rows]), y_train[rows]).backward()
            optimizer.step()
    head.eval()
    with torch.no_grad():
        return float((head(f_test).argmax(1) == test.labels).float().mean())


@torch.no_grad()
def generate(model, n: int, seed: int, *, labels: torch.Tensor | None = None, alpha: float | None = None,
             step: str | None = None, guide=None, guidance_scale: float = GUIDANCE_SCALE, batch_size: int = 500,
             progress: bool = False) -> torch.Tensor:
    """n images in [0, 1] (N×C×H×W, CPU), seeded. `labels` (n,) with a joint model: conditional
    sampling by optimised representations with step size `alpha` and sign `step` (default the
    model's `sampling_step`); with `guide` (a noisy
    `UNetClassifier`) and a DDGM: classifier guidance toward `labels` (Eq. 6.12); neither:
    unconditional."""
    from genrep.data.transforms import rescale
    from genrep.diffusion.guidance import classifier_guidance
    from genrep.models.ddgm import from_model_range

    model.eval()
    generator = torch.Generator(device=model.device).manual_seed(seed)
    chunks = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        y = None if labels is None else labels[start:start + m].to(model.device)
        if guide is not None:
            guide.eval()
            cond_fn = classifier_guidance(guide.logits_model_range, y, guidance_scale)
            process = model.sampling_diffusion
            x = process.sample_loop(model.unet, (m, *model.image_shape), sampler=model.config.sampler,
                                    cond_fn=cond_fn, clip_denoised=model.config.clip_denoised,
                                    generator=generator, device=model.device, progress=progress)
            x = from_model_range(x, model.value_range)
        elif y is not None:
            x = model.sample(m, y, alpha=alpha, step=step, generator=generator, progress=progress)
        else:
            x = model.sample(m, generator=generator, progress=progress)
        chunks.append(rescale(x.float().cpu(), model.value_range, (0.0, 1.0)).clamp_(0.0, 1.0))
    return torch.cat(chunks)


def feature_extractor(scale: str, dataset: str | None = None, *, progress: bool = False):
    """(extractor, note) for FID / PRD: Inception at `paper`, the data set's cached LeNet at `cpu`
    (trained now and cached if missing), a quick 1-epoch LeNet (not cached) at `smoke`."""
    from genrep.errors import CheckpointError
    from genrep.metrics import get_extractor
    from genrep.metrics.features import load_lenet, train_lenet

    s = scale_of(scale)
    name = dataset or s.dataset
    if s.features == "inception":
        return get_extractor("inception", resize="torch"), "Inception (FID port, 2048-d)"
    try:
        if s.features == "lenet":
            return load_lenet(name), f"LeNet[{name}] (cached)"
    except CheckpointError:
        pass
    quick = s.features == "quick-lenet"
    model, accuracy = train_lenet(name, epochs=1 if quick else None, save=not quick, progress=progress)
    return model, f"LeNet[{name}] ({'quick 1-epoch' if quick else 'trained now'}, test accuracy {accuracy:.4f})"


def generation_metrics(f_real: torch.Tensor, f_fake: torch.Tensor, seed: int) -> dict[str, float]:
    """FID and PRD precision / recall (×100; Sajjadi et al., what Table 6.6.2 reports)."""
    from genrep import metrics as M

    precision, recall = M.prd(real=f_real, fake=f_fake, seed=seed)
    return {"fid": M.fid(f_real, f_fake), "precision": 100 * precision, "recall": 100 * recall}


def load_run(run_dir: Path):
    from genrep.experiments.train import load_trained_model

    return load_trained_model(run_dir)
