"""Linear probes of diffusion representations across timesteps (thesis Sec. 6.4.2, Fig. 6.4.2b;
METHODS.md §3 "Probing").

What is measured
    A trained diffusion model's UNet encoder maps a noisy image x_t to a set of feature maps (every
    skip tensor and the middle block); averaged over H×W and concatenated they are the pooled
    representation z_t of thesis Sec. 6.4 (`UNet.pool_features`; 1856 features for the reference
    FashionMNIST UNet). For each of (by default) ten evenly spaced timesteps t, z_t is computed for
    a training and a test split, standardised (`StandardScaler` fitted on the training features),
    and scikit-learn logistic regressions (L2, `C`, lbfgs) are fitted on the training features:

    - single-label data (class labels y ∈ {0..K−1}): one multinomial regression → test accuracy,
      and one binary one-vs-rest regression per class k (y == k) → test ROC AUC of class k;
    - multi-label data (binary attributes N×A in {0, 1}, e.g. CelebA's 40, which genrep keeps in
      `ImageDataset.conditions`): one binary regression per attribute → test ROC AUC per attribute
      (the thesis' Fig. 6.4.2b).

    The mean AUC over classes/attributes (NaN entries left out) summarises each t. Chance levels:
    AUC 0.5; accuracy of always predicting the most frequent training class (its test frequency).
    A class or attribute that is constant in the training or test split has no AUC (NaN).

Noise and timesteps
    Timesteps are the 0-based indices of `genrep.diffusion`: x_t = q_sample(x0, t) =
    √ᾱ_t x0 + √(1 − ᾱ_t) ε. **t = 0 is not the clean image**: it is the first diffusion step (the
    thesis' x_1; ᾱ_0 = 1 − β_1, e.g. β_1 = 1e-4 for the linear schedule with T = 1000), the least
    noisy input the UNet was trained on; t = T − 1 is (almost) pure noise. The noise ε of every t
    comes from `noise_generator(seed, t)`, the same for the training and the test split, so a
    result is deterministic given `seed` (and the batch size, which changes how ε is drawn).

Which representation (the protocol)
    `diffusion_features(model, ...)` needs a model with `.diffusion` (a `GaussianDiffusion` with
    `num_timesteps` and `q_sample`), `.value_range` and either
    - a method `representation(x_t, t)` → B×F tensor (x_t B×C×H×W in [-1, 1], t (B,) int64): used
      when present — a joint diffusion model (thesis ch. 6; a `DDGM` subclass) defines it to return
      its classifier head's input z; or else
    - `.unet`, a `genrep.models.unet.UNet`: z_t = `unet.pool_features(*unet.encode(x_t, t))`.
    DDGM and DAED runs qualify. A class-conditional UNet is refused (encoding would need the very
    labels the probe predicts).

Outputs (`probe_report`): OUT/probe.json (settings, per-t accuracy, per-name AUC, mean AUC, chance)
and OUT/probe.png (`plot_probe`: AUC — and accuracy for single-label data — against t).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from genrep.errors import ConfigError, InputError

DEFAULT_NUM_TIMESTEPS = 10
MAX_LABELLED = 10  # lines with a legend entry in `plot_probe`; the rest are thin grey
KINDS = ("classes", "attributes")
TARGETS = ("auto", "labels", "attributes")


# ----------------------------------------------------------------------------------------- timesteps
def probe_timesteps(T: int, n: int = DEFAULT_NUM_TIMESTEPS) -> list[int]:
    """`n` evenly spaced integer timesteps in [0, T), the first 0 and the last T − 1 (rounded
    `linspace(0, T − 1, n)`; fewer when n > T, since duplicates are dropped; n = 1 gives [0])."""
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ConfigError(f"the number of diffusion steps T must be a positive integer, got {T!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"the number of probing timesteps must be a positive integer, got {n!r}")
    if n == 1:
        return [0]
    return sorted({int(v) for v in np.rint(np.linspace(0, int(T) - 1, int(n)))})


def check_timesteps(timesteps: Sequence[int], T: int) -> list[int]:
    """The given timesteps as sorted, distinct ints; InputError unless each is an integer in [0, T)."""
    values = list(timesteps)
    if not values:
        raise InputError("give at least one probing timestep")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) and not (
                isinstance(v, float) and v.is_integer()):
            raise InputError(f"probing timesteps must be integers in [0, T) = [0, {T}), got {v!r}")
        out.append(int(v))
    bad = [v for v in out if not 0 <= v < T]
    if bad:
        raise InputError(f"probing timesteps must lie in [0, T) = [0, {T}) (0-based steps of the run's diffusion),"
                         f" got {bad}")
    return sorted(set(out))


def noise_generator(seed: int, t: int) -> torch.Generator:
    """The CPU generator whose draws are the noise ε of timestep t (the same for train and test)."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(t))


# ----------------------------------------------------------------------------------------- features
def probe_parts(model):
    """(diffusion, representation function or None, unet or None) of a model; InputError if unusable."""
    name = type(model).__name__
    diffusion = getattr(model, "diffusion", None)
    rep = getattr(model, "representation", None)
    rep = rep if callable(rep) else None
    unet = getattr(model, "unet", None)
    from genrep.models.unet import UNet

    if not isinstance(unet, UNet):
        unet = None
    if diffusion is None or not hasattr(diffusion, "q_sample") or (rep is None and unet is None):
        raise InputError(f"{name} has no diffusion UNet to probe: the probe needs a model with .unet (a UNet) and"
                         " .diffusion, e.g. a ddgm or daed run")
    if rep is None and unet.config.num_classes is not None:
        raise InputError(f"{name} has a class-conditional UNet: encoding x_t needs the labels the probe predicts;"
                         " probe an unconditional diffusion model")
    return diffusion, rep, unet


def _timestep_tensor(t, n: int, T: int) -> torch.Tensor:
    """t (an int, or (N,) ints as a tensor / list / array) → (n,) int64 CPU tensor; InputError unless in [0, T)."""
    if isinstance(t, float) and t.is_integer():
        t = int(t)
    if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
        values = torch.full((n,), int(t), dtype=torch.long)
    elif isinstance(t, (torch.Tensor, list, tuple, np.ndarray)):
        values = torch.as_tensor(t)
        if values.dtype == torch.bool or values.is_complex() or (
                values.is_floating_point() and not bool((values == values.round()).all())):
            raise InputError(f"probing timesteps must be integers in [0, T) = [0, {T})")
        values = values.long().cpu()
        if values.ndim == 0:
            values = values.expand(n)
        if values.shape != (n,):
            raise InputError(f"t must be one timestep or one per image ({n},), got shape {tuple(values.shape)}")
    else:
        raise InputError(f"probing timesteps must be integers in [0, T) = [0, {T}), got {t!r:.60}")
    if n and (int(values.min()) < 0 or int(values.max()) >= T):
        bad = sorted({int(v) for v in values[(values < 0) | (values >= T)]})
        raise InputError(f"probing timesteps must lie in [0, T) = [0, {T}), got {bad[:5]}")
    return values


@torch.no_grad()
def diffusion_features(model, x: torch.Tensor, t, *, batch_size: int = 256, generator: torch.Generator | None = None,
                       noise: torch.Tensor | None = None, append_t: bool = False, progress: bool = True) -> np.ndarray:
    """Pooled representations z_t of images x: float32 numpy N×F.

    x: N×C×H×W in the model's `value_range` (mapped to [-1, 1] like the DDGM does); t: one timestep
    (int) or one per image ((N,) ints), each in [0, T) (InputError otherwise; t = 0 is the first,
    slightly noised, diffusion step, see the module docstring). x_t = `diffusion.q_sample(x0, t, ε)`
    with ε = `noise` (N×C×H×W) if given, else drawn batch by batch from `generator` (CPU; the global
    RNG when None). z_t = `model.representation(x_t, t)` when the model defines it, else
    `unet.pool_features(*unet.encode(x_t, t))` (F = `unet.feature_dim`); `append_t` adds t as one
    last column (the reference code does). No gradients, eval mode (restored afterwards), batches of
    `batch_size` on the model's device, a tqdm bar with `progress`."""
    from genrep.models.ddgm import to_model_range

    diffusion, rep, unet = probe_parts(model)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"images must be a float tensor N×C×H×W, got {shape}")
    image_shape = getattr(model, "image_shape", None)
    if image_shape is not None and tuple(x.shape[1:]) != tuple(image_shape):
        raise InputError(f"the model was built for {'×'.join(map(str, image_shape))} images, got "
                         f"{'×'.join(map(str, x.shape[1:]))}")
    if noise is not None and (not isinstance(noise, torch.Tensor) or tuple(noise.shape) != tuple(x.shape)):
        got = tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
        raise InputError(f"noise must have the images' shape {tuple(x.shape)}, got {got}")
    T = int(diffusion.num_timesteps)
    n = x.shape[0]
    ts = _timestep_tensor(t, n, T)
    module = model if isinstance(model, torch.nn.Module) else unet
    device = next(iter(module.parameters())).device if any(True for _ in module.parameters()) else torch.device("cpu")
    value_range = tuple(getattr(model, "value_range", (-1.0, 1.0)))
    was_training = module.training
    module.eval()
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="features", leave=False, total=-(-n // batch_size))
    rows = []
    try:
        for start in starts:
            stop = min(start + batch_size, n)
            x0 = to_model_range(x[start:stop].float(), value_range).to(device)
            eps = (noise[start:stop] if noise is not None
                   else torch.randn(x0.shape, generator=generator) if generator is not None
                   else torch.randn(x0.shape))
            tb = ts[start:stop].to(device)
            x_t = diffusion.q_sample(x0, tb, eps.to(device=device, dtype=x0.dtype))
            if rep is not None:
                z = rep(x_t, tb)
            else:
                z = unet.pool_features(*unet.encode(x_t, tb))
            z = z.float().reshape(stop - start, -1)
            if append_t:
                z = torch.cat([z, tb.float()[:, None]], dim=1)
            rows.append(z.cpu())
    finally:
        module.train(was_training)
    if not rows:
        width = (unet.feature_dim if rep is None else 0) + int(append_t)
        return np.zeros((0, width), dtype=np.float32)
    return torch.cat(rows).numpy().astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------- targets
def probe_targets(data, target: str = "auto") -> tuple[str, np.ndarray, list[str]]:
    """(kind, targets, names) of a data set: kind "classes" with int labels (N,) and class names, or
    "attributes" with binary N×A targets from `data.conditions` (values in {0, 1}, e.g. CelebA) and
    their names. target: "auto" (labels if present, else binary conditions), "labels", "attributes"."""
    if target not in TARGETS:
        raise ConfigError(f"unknown probe target {target!r}; choose one of {', '.join(TARGETS)}")
    labels = getattr(data, "labels", None)
    conditions = getattr(data, "conditions", None)
    name = getattr(data, "name", "data")
    if target in ("auto", "labels") and labels is not None:
        y = torch.as_tensor(labels).cpu().numpy().astype(np.int64)
        k = int(y.max()) + 1 if len(y) else 0
        names = list(getattr(data, "class_names", None) or [str(c) for c in range(k)])
        return "classes", y, names
    if target in ("auto", "attributes") and conditions is not None:
        c = torch.as_tensor(conditions).cpu().numpy()
        if c.ndim != 2 or not np.isin(c, (0.0, 1.0)).all():
            raise InputError(f"{name}: probing attributes needs binary conditions N×A in {{0, 1}} (e.g. CelebA);"
                             " these are continuous")
        names = list(getattr(data, "condition_names", None) or [f"attribute {a}" for a in range(c.shape[1])])
        return "attributes", c.astype(np.int64), names
    want = {"auto": "class labels or binary attributes", "labels": "class labels",
            "attributes": "binary attributes (conditions)"}[target]
    raise InputError(f"{name} has no {want} to probe")


# ----------------------------------------------------------------------------------------- result
@dataclasses.dataclass
class ProbeResult:
    """Probe scores per timestep. `auc`: (len(timesteps), len(names)), NaN where undefined;
    `mean_auc`: (len(timesteps),) the mean over the defined entries; `accuracy`: multinomial test
    accuracy per t ("classes" only, else None); `chance_accuracy`: the test frequency of the most
    frequent training class; `positive_rate`: the test frequency of each class/attribute."""

    kind: str
    timesteps: list[int]
    num_timesteps: int
    names: list[str]
    auc: np.ndarray
    mean_auc: np.ndarray
    accuracy: np.ndarray | None
    chance_accuracy: float | None
    positive_rate: np.ndarray
    n_train: int
    n_test: int
    feature_dim: int
    seed: int = 0
    C: float = 1.0
    max_iter: int = 1000
    not_converged: int = 0
    chance_auc: float = 0.5

    def auc_of(self, name: str | int) -> np.ndarray:
        """AUC per timestep of one class/attribute (by name or index)."""
        return self.auc[:, _name_index(self.names, name)]

    def to_dict(self) -> dict:
        """JSON-ready (NaN → null)."""
        return {
            "kind": self.kind, "T": self.num_timesteps, "timesteps": list(self.timesteps), "names": list(self.names),
            "accuracy": None if self.accuracy is None else _clean(self.accuracy),
            "mean_auc": _clean(self.mean_auc),
            "auc": {name: _clean(self.auc[:, i]) for i, name in enumerate(self.names)},
            "chance_accuracy": _clean(self.chance_accuracy), "chance_auc": self.chance_auc,
            "positive_rate": {name: _clean(self.positive_rate[i]) for i, name in enumerate(self.names)},
            "n_train": self.n_train, "n_test": self.n_test, "feature_dim": self.feature_dim, "seed": self.seed,
            "C": self.C, "max_iter": self.max_iter, "not_converged": self.not_converged,
        }

    def table(self) -> list[str]:
        """Printable lines: t, accuracy (classes) and mean AUC per timestep."""
        lines = [f"{'t':>6} {'accuracy':>9} {'mean AUC':>9}"]
        for i, t in enumerate(self.timesteps):
            acc = "-" if self.accuracy is None else f"{self.accuracy[i]:.3f}"
            lines.append(f"{t:>6d} {acc:>9} {_fmt(self.mean_auc[i]):>9}")
        chance = "-" if self.chance_accuracy is None else f"{self.chance_accuracy:.3f}"
        lines.append(f"{'chance':>6} {chance:>9} {self.chance_auc:>9.3f}")
        return lines


def _fmt(v) -> str:
    return "nan" if v is None or not math.isfinite(float(v)) else f"{float(v):.3f}"


def _clean(v):
    if v is None:
        return None
    if isinstance(v, np.ndarray):
        return [_clean(x) for x in v.tolist()]
    v = float(v)
    return v if math.isfinite(v) else None


def _name_index(names: list[str], name) -> int:
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        if not 0 <= int(name) < len(names):
            raise InputError(f"index {name} is out of range: there are {len(names)} classes/attributes")
        return int(name)
    if name not in names:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise InputError(f"unknown class/attribute {name!r}; known: {shown}")
    return names.index(name)


# ----------------------------------------------------------------------------------------- probing
def _fit(features, targets, C, max_iter):
    """A fitted LogisticRegression and whether it converged."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(features, targets)
    return clf, bool(np.all(np.asarray(clf.n_iter_) < max_iter))


def fit_probes(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray, *, kind: str,
               num_names: int, C: float = 1.0, max_iter: int = 1000) -> tuple[float | None, np.ndarray, int]:
    """One timestep's probes on given features: (multinomial test accuracy or None, AUC per
    class/attribute (num_names,), number of fits that did not converge). Features are standardised
    with a StandardScaler fitted on z_train."""
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(z_train)
    a, b = scaler.transform(z_train), scaler.transform(z_test)
    accuracy, failed = None, 0
    if kind == "classes":
        clf, ok = _fit(a, y_train, C, max_iter)
        accuracy, failed = float(clf.score(b, y_test)), int(not ok)
        binary_train = [(y_train == k).astype(np.int64) for k in range(num_names)]
        binary_test = [(y_test == k).astype(np.int64) for k in range(num_names)]
    else:
        binary_train = [y_train[:, k] for k in range(num_names)]
        binary_test = [y_test[:, k] for k in range(num_names)]
    auc = np.full(num_names, np.nan)
    for k, (yk_train, yk_test) in enumerate(zip(binary_train, binary_test)):
        if len(np.unique(yk_train)) < 2 or len(np.unique(yk_test)) < 2:
            continue  # constant in one split: no AUC
        clf, ok = _fit(a, yk_train, C, max_iter)
        failed += int(not ok)
        auc[k] = roc_auc_score(yk_test, clf.decision_function(b))
    return accuracy, auc, failed


def probe(model, train, test, *, timesteps: Sequence[int] | None = None, num_timesteps: int = DEFAULT_NUM_TIMESTEPS,
          max_train: int | None = None, max_test: int | None = None, seed: int = 0, C: float = 1.0,
          max_iter: int = 1000, target: str = "auto", batch_size: int = 256, append_t: bool = False,
          progress: bool = True, log: Callable[[str], None] | None = None) -> ProbeResult:
    """Logistic-regression probes of z_t (module docstring) at `timesteps` (default:
    `probe_timesteps(T, num_timesteps)`), fitted on `train` and scored on `test` (genrep
    ImageDatasets in the model's value range; seeded subsets of `max_train` / `max_test` images).
    Targets by `probe_targets(data, target)`. Deterministic given `seed`. `log` gets one line per t."""
    from genrep.data.transforms import random_subset

    diffusion = probe_parts(model)[0]
    T = int(diffusion.num_timesteps)
    steps = probe_timesteps(T, num_timesteps) if timesteps is None else check_timesteps(timesteps, T)
    if isinstance(C, bool) or not isinstance(C, (int, float)) or not C > 0 or not math.isfinite(C):
        raise ConfigError(f"C (inverse L2 strength of the logistic regression) must be a number > 0, got {C!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ConfigError(f"max_iter must be a positive integer, got {max_iter!r}")
    model_range = tuple(float(v) for v in getattr(model, "value_range", (-1.0, 1.0)))
    for split, data in (("train", train), ("test", test)):
        data_range = tuple(float(v) for v in getattr(data, "value_range", model_range))
        if data_range != model_range:
            raise InputError(f"the {split} images are in [{data_range[0]:g}, {data_range[1]:g}] but the model works in"
                             f" [{model_range[0]:g}, {model_range[1]:g}]; load them with the model's value range")
    for key, limit in (("max_train", max_train), ("max_test", max_test)):
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ConfigError(f"{key} must be a positive number of images, got {limit!r}")
    if max_train is not None:
        train = random_subset(train, max_train, seed=seed)
    if max_test is not None:
        test = random_subset(test, max_test, seed=seed)
    kind, y_train, names = probe_targets(train, target)
    y_test = probe_targets(test, "labels" if kind == "classes" else "attributes")[1]
    if kind == "classes":
        if len(np.unique(y_train)) < 2:
            raise InputError("the probe's training split needs at least two classes")
        k = max(len(names), int(y_train.max()) + 1, int(y_test.max()) + 1 if len(y_test) else 0)
        names = names + [str(c) for c in range(len(names), k)]
        values, counts = np.unique(y_train, return_counts=True)
        chance = float(np.mean(y_test == values[np.argmax(counts)]))
        positive_rate = np.array([np.mean(y_test == c) for c in range(k)], dtype=np.float64)
    else:
        if y_train.shape[1] != y_test.shape[1]:
            raise InputError(f"train has {y_train.shape[1]} attributes but test has {y_test.shape[1]}")
        chance = None
        positive_rate = y_test.mean(axis=0).astype(np.float64)
    if len(y_test) == 0:
        raise InputError("the probe's test split is empty")

    accuracy = np.full(len(steps), np.nan) if kind == "classes" else None
    auc = np.full((len(steps), len(names)), np.nan)
    failed, feature_dim = 0, 0
    loop = steps
    if progress:
        from tqdm.auto import tqdm

        loop = tqdm(steps, desc="probe timesteps")
    for i, t in enumerate(loop):
        z_train = diffusion_features(model, train.images, t, batch_size=batch_size, generator=noise_generator(seed, t),
                                     append_t=append_t, progress=progress)
        z_test = diffusion_features(model, test.images, t, batch_size=batch_size, generator=noise_generator(seed, t),
                                    append_t=append_t, progress=progress)
        feature_dim = z_train.shape[1]
        acc, auc[i], bad = fit_probes(z_train, y_train, z_test, y_test, kind=kind, num_names=len(names), C=C,
                                      max_iter=max_iter)
        failed += bad
        if accuracy is not None:
            accuracy[i] = acc
        if log is not None:
            acc_text = "" if acc is None else f"accuracy {acc:.3f}, "
            log(f"t={t}: {acc_text}mean AUC {_fmt(_nanmean(auc[i]))}")
    mean_auc = np.array([_nanmean(row) for row in auc])
    return ProbeResult(kind=kind, timesteps=steps, num_timesteps=T, names=names, auc=auc, mean_auc=mean_auc,
                       accuracy=accuracy, chance_accuracy=chance, positive_rate=positive_rate, n_train=len(y_train),
                       n_test=len(y_test), feature_dim=feature_dim, seed=seed, C=float(C), max_iter=max_iter,
                       not_converged=failed)


def _nanmean(row: np.ndarray) -> float:
    row = np.asarray(row, dtype=np.float64)
    return float(np.mean(row[np.isfinite(row)])) if np.isfinite(row).any() else math.nan


# ----------------------------------------------------------------------------------------- outputs
def labelled_names(result: ProbeResult, attributes: Sequence[str | int] | None = None) -> list[int]:
    """Indices of the lines `plot_probe` labels: `attributes` (names or indices) if given, else all
    when there are at most MAX_LABELLED, else the MAX_LABELLED whose AUC changes most over t."""
    if attributes is not None:
        return list(dict.fromkeys(_name_index(result.names, a) for a in attributes))
    k = len(result.names)
    if k <= MAX_LABELLED:
        return list(range(k))
    spread = np.array([np.nanmax(c) - np.nanmin(c) if np.isfinite(c).any() else -1.0 for c in result.auc.T])
    return sorted(np.argsort(-spread, kind="stable")[:MAX_LABELLED].tolist())


def plot_probe(result: ProbeResult, path: str | Path, *, attributes: Sequence[str | int] | None = None,
               title: str = "") -> Path:
    """PNG at `path`: test AUC against the diffusion timestep t, one line per class/attribute (the
    `labelled_names` in colour with a legend, the others thin grey), the mean AUC in black and the
    chance level dotted; for single-label data a second panel with the multinomial accuracy."""
    from genrep.utils.plots import plt, save_figure

    t = np.asarray(result.timesteps)
    chosen = labelled_names(result, attributes)
    panels = 2 if result.accuracy is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.2 * panels + 1.5, 4.4), dpi=120, squeeze=False)
    axes = axes[0]
    ax = axes[-1]
    marker = "o" if len(t) <= 20 else None
    for k in range(len(result.names)):
        if k not in chosen:
            ax.plot(t, result.auc[:, k], color="0.7", lw=0.7, zorder=1)
    for j, k in enumerate(chosen):
        ax.plot(t, result.auc[:, k], color=f"C{j % 10}", lw=1.4, marker=marker, ms=3, label=result.names[k], zorder=2)
    ax.plot(t, result.mean_auc, color="black", lw=2.4, marker=marker, label=f"mean of {len(result.names)}", zorder=3)
    ax.axhline(result.chance_auc, color="grey", ls=":", lw=1, label="chance")
    what = "class (one-vs-rest)" if result.kind == "classes" else "attribute"
    ax.set_title(f"Test AUC of a logistic regression per {what}", fontsize=10)
    ax.set_ylabel("ROC AUC")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    if result.accuracy is not None:
        ax_acc = axes[0]
        ax_acc.plot(t, result.accuracy, color="tab:blue", lw=2, marker=marker, label="multinomial regression")
        ax_acc.axhline(result.chance_accuracy, color="grey", ls=":", lw=1, label="chance (majority class)")
        ax_acc.set_ylim(0, 1.02)
        ax_acc.set_ylabel("test accuracy")
        ax_acc.set_title("Test accuracy of a multinomial logistic regression", fontsize=10)
        ax_acc.legend(fontsize=8)
    for a in axes:
        a.set_xlabel("diffusion timestep t")
        a.grid(alpha=0.3)
        if len(t) <= 12:
            a.set_xticks(t)
        a.set_xlim(-0.02 * max(result.num_timesteps - 1, 1), (result.num_timesteps - 1) * 1.02 + 1e-9)
    fig.suptitle(title or f"Linear probes of pooled UNet features z_t (T={result.num_timesteps}, "
                          f"{result.n_train} train / {result.n_test} test images, {result.feature_dim} features)",
                 fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def write_probe_json(result: ProbeResult, path: str | Path, *, info: dict | None = None) -> Path:
    """`result.to_dict()` (with `info` merged in first) as JSON, via `genrep.runs.write_json`."""
    from genrep.runs import write_json

    write_json(path, {**(info or {}), **result.to_dict()})
    return Path(path)


def probe_report(model, train, test, out: str | Path, *, attributes: Sequence[str | int] | None = None,
                 title: str = "", info: dict | None = None, log=print, **kwargs) -> ProbeResult:
    """`genrep analyze probe` once the run is loaded: `probe(model, train, test, **kwargs)`, then
    OUT/probe.json and OUT/probe.png, and the table t → accuracy / mean AUC through `log`."""
    from genrep.utils.files import output_dir

    out = output_dir(out)  # before the work: an --out that is a file fails here
    if attributes is not None:  # unknown names fail before the work
        names = probe_targets(train, kwargs.get("target", "auto"))[2]
        for a in attributes:
            _name_index(names, a)
    result = probe(model, train, test, **kwargs)
    write_probe_json(result, out / "probe.json", info=info)
    plot_probe(result, out / "probe.png", attributes=attributes, title=title)
    for line in result.table():
        log(line)
    if result.not_converged:
        log(f"note: {result.not_converged} logistic regression fit(s) stopped at max_iter={result.max_iter} "
            "before converging (raise --max-iter)")
    log(f"wrote {out / 'probe.json'} and {out / 'probe.png'}")
    return result
