"""Joint diffusion model (thesis ch. 6): a DDGM whose UNet encoder also feeds a classifier head.

Representation (Sec. 6.4, Fig. 6.4.1): Z_t = e(x_t) = (h, skips), the middle block and every skip
tensor of the UNet encoder; z_t = `UNet.pool_features(h, skips)` averages each over H×W and
concatenates them. Its length F = Σ skip channels + middle channels (`unet.feature_dim`):

    image  model_channels  channel_mult   ResBlocks   F
    28 px  64              (1, 2, 2)      3           21·64  = 1344  (the reference code's 28-px net)
    32 px  64              (1, 2, 2, 2)   3           29·64  = 1856  (the thesis' figure for 28 px)
    32 px  128             (1, 2, 2, 2)   3           29·128 = 3712  (CIFAR)
    64 px  128             (1, 1, 2, 2, 4) 3          41·128 = 5248  (CelebA)

`classifier.append_t` also appends the raw timestep t as one feature (the reference code; F + 1).

Head g (METHODS.md §3, the reference `Classifier`): Dropout(0.7) → BN(F) → Linear(F → F/2) →
LeakyReLU(0.01) → Dropout(0.7) → BN(F/2) → Linear(F/2 → K). K classes (CE) or A attributes
(multi-label BCE, e.g. the 40 CelebA attributes carried in the batch as conditions "c").

Loss (Eq. 6.8), one optimiser over encoder, decoder and head:
    L = mean_i w_i ‖ε − ε̂(x_t,i, t_i)‖² + λ · L_class,   L_class = CE(g(e(aug(x_0))), y)   (Eq. 6.7)
λ = `classifier.loss_weight`: "thesis" = 1 (Eq. 6.8), "reference" = 0.001 (every published
command), or a number. The CE only reaches the head and the encoder.
Noisy classifiers (`classifier.noisy`):
- "off": the clean term only (the thesis' default training, Sec. 6.6);
- "thesis": Eq. 6.10, L_class + Σ_{τ ∈ 𝒯} CE(g(e(aug(x_τ))), y) with x_τ = q_sample(x_0, τ):
  with `classifier.noisy_timesteps` = 𝒯 the exact sum over that set; by default (null; the thesis
  leaves 𝒯 open) 𝒯 = {1, …, T−1} estimated by one term per image at the diffusion's own t and
  noise (t = 0 counts as 1), i.e. the sum up to the constant |𝒯|: one extra encoder pass per step;
- "reference": CE(g(e(aug(x_t)), t)) at the diffusion's own sampled t and noise *replaces* the
  clean term (`train_noised_classifier=True` of the reference code).
Augmentation (`classifier.augmentation`, on by default as in the reference): see
`classifier_augmentation.py`.

Semi-supervised batches mark unlabelled images with y = −1 (Sec. 6.6.4, App. 6.8.1): the
diffusion loss uses every image; the labelled ones go into a `LabelledBuffer` of
`classifier.buffer_size` images, and the CE is computed only when the buffer releases a full,
batch-sized set (otherwise its term is 0). Without a buffer the CE averages over the labelled
images of the batch. `classifier.train = false` drops the CE and freezes the head (domain
adaptation: fine-tune with the diffusion loss only, the head unchanged, Sec. 6.6.5).

Conditional sampling (Alg. 1): `sample(n, cond=y, alpha=α)` runs the configured sampler (ancestral
or DDIM, respaced or not) on `genrep.diffusion.guidance.OptimisedRepresentations`, which at every
step moves every tensor of Z_t by α·∇_Z CE_sum(g(Z_t), y) before decoding; fixed-large variance,
no clipping (the defaults of this config). `sample(n)` without cond is unconditional.
"""

from __future__ import annotations

import dataclasses

import torch

from genrep.diffusion.guidance import STEPS, OptimisedRepresentations
from genrep.errors import ConfigError, InputError
from genrep.models.base import Output
from genrep.models.classifier_augmentation import SPACES, ClassifierAugmentation
from genrep.models.ddgm import DDGM, DDGMConfig, from_model_range, reverse_diffusion, to_model_range
from genrep.models.pooled_classifier import ClassifierHead, LabelledBuffer, PooledClassifier

LOSS_WEIGHTS = {"thesis": 1.0, "reference": 0.001}
NOISY_MODES = ("off", "thesis", "reference")


@dataclasses.dataclass
class ClassifierSettings:
    """The classifier head and its loss (module docstring). loss_weight: "thesis" (1), "reference"
    (0.001) or a number ≥ 0. noisy: "off" | "thesis" | "reference". noisy_timesteps: 𝒯 for
    "thesis" (null = all of 1…T−1, one sampled term per image). augmentation: kornia augmentation of the classifier input;
    augmentation_space: "data" | "reference". append_t: append raw t to z (reference). dropout:
    both dropout layers (0.7). buffer_size: the semi-supervised labelled buffer (null = none; the
    recipes set the batch size). train: false = diffusion loss only, head frozen."""

    loss_weight: float | str = "thesis"
    noisy: str = "off"
    noisy_timesteps: tuple[int, ...] | None = None
    augmentation: bool = True
    augmentation_space: str = "data"
    append_t: bool = False
    dropout: float = 0.7
    buffer_size: int | None = None
    train: bool = True

    def __post_init__(self):
        w = self.loss_weight
        if isinstance(w, str):
            if w not in LOSS_WEIGHTS:
                raise ConfigError(f"model.classifier.loss_weight must be a number >= 0 or one of"
                                  f" {', '.join(LOSS_WEIGHTS)}, got {w!r}")
        elif isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
            raise ConfigError(f"model.classifier.loss_weight must be a number >= 0, got {w!r}")
        if self.noisy not in NOISY_MODES:
            raise ConfigError(f"model.classifier.noisy must be one of {', '.join(NOISY_MODES)}, got {self.noisy!r}")
        if self.noisy_timesteps is not None:
            if not isinstance(self.noisy_timesteps, (list, tuple)) or not self.noisy_timesteps or any(
                    isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in self.noisy_timesteps):
                raise ConfigError("model.classifier.noisy_timesteps must be a non-empty list of timesteps >= 1,"
                                  f" got {self.noisy_timesteps!r}")
            self.noisy_timesteps = tuple(self.noisy_timesteps)
        if self.augmentation_space not in SPACES:
            raise ConfigError(f"model.classifier.augmentation_space must be one of {', '.join(SPACES)},"
                              f" got {self.augmentation_space!r}")
        for key in ("augmentation", "append_t", "train"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"model.classifier.{key} must be true or false, got {getattr(self, key)!r}")
        d = self.dropout
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d < 1:
            raise ConfigError(f"model.classifier.dropout must be a probability in [0, 1), got {d!r}")
        b = self.buffer_size
        if b is not None and (isinstance(b, bool) or not isinstance(b, int) or b < 1):
            raise ConfigError(f"model.classifier.buffer_size must be an integer >= 1 or null, got {b!r}")

    @property
    def weight(self) -> float:
        """λ of Eq. 6.8."""
        return LOSS_WEIGHTS[self.loss_weight] if isinstance(self.loss_weight, str) else float(self.loss_weight)


@dataclasses.dataclass
class JointDiffusionConfig(DDGMConfig):
    """A `DDGMConfig` (the diffusion and its UNet) plus `classifier` (`ClassifierSettings`) and
    `sampling_alpha`, the step size α of conditional sampling (thesis sweet spot 100–250; the
    reference default is 1000), and `sampling_step` its sign: "ascend-ce" (Z + α∇CE, the reference
    code and Alg. 1 as printed, METHODS.md) or "descend-ce" (Z − α∇CE, the thesis prose's rule for
    ε-prediction). Sampling defaults to no clipping (Alg. 1, the reference code).
    The reference FashionMNIST run: steps 500, UNet 64 channels, mult (1, 2, 2), 3 ResBlocks,
    dropout 0.3, loss_weight "reference", AdamW 1e-4, batch 128, 100k steps."""

    clip_denoised: bool = False
    classifier: ClassifierSettings = dataclasses.field(default_factory=ClassifierSettings)
    sampling_alpha: float = 200.0
    sampling_step: str = "ascend-ce"

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.classifier, dict):
            self.classifier = ClassifierSettings(**self.classifier)
        if self.sampling_step not in STEPS:
            raise ConfigError(f"model.sampling_step must be one of {', '.join(STEPS)}, got {self.sampling_step!r}")
        a = self.sampling_alpha
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not a >= 0:
            raise ConfigError(f"model.sampling_alpha must be a number >= 0, got {a!r}")
        bad = [v for v in self.classifier.noisy_timesteps or () if v >= self.steps]
        if bad:
            raise ConfigError(f"model.classifier.noisy_timesteps {bad} must lie in [1, steps = {self.steps})")


class JointDiffusion(PooledClassifier, DDGM):
    """images N×C×H×W in `value_range` with labels y (N,) (−1 = unlabelled) or attributes c N×A →
    Output(loss, parts: mse, vb, ce, accuracy, labelled). See the module docstring.

    num_classes: K for a single-label head (CE); num_attributes: A for a multi-label head (BCE on
    batch["c"] in {0, 1}). Exactly one is given. The UNet itself is unconditional."""

    def __init__(self, config: JointDiffusionConfig, *, image_shape, value_range=(0.0, 1.0),
                 num_classes: int | None = None, num_attributes: int | None = None):
        if (num_classes is None) == (num_attributes is None):
            raise ConfigError("a joint diffusion model needs either class labels (num_classes) or binary"
                              " attributes (num_attributes), not both or neither")
        super().__init__(config, image_shape=image_shape, value_range=value_range)
        self.head_classes = num_classes
        self.append_t = config.classifier.append_t
        self.num_attributes = num_attributes
        self.multi_label = num_attributes is not None
        cls = config.classifier
        self.head = ClassifierHead(self.unet.feature_dim + int(cls.append_t), num_classes or num_attributes,
                                   dropout=cls.dropout)
        self.augment = ClassifierAugmentation(self.image_shape, space=cls.augmentation_space) if cls.augmentation else None
        self.label_buffer = None
        if cls.buffer_size is not None:
            target_shape = (num_attributes,) if self.multi_label else ()
            self.label_buffer = LabelledBuffer(cls.buffer_size, self.image_shape, target_shape,
                                               torch.float32 if self.multi_label else torch.int64)
        self.noisy_timesteps = cls.noisy_timesteps
        if not cls.train:
            self.head.requires_grad_(False)

    # ----------------------------------------------------------------------- training
    def forward(self, batch: dict[str, torch.Tensor]) -> Output:
        x = self.check_batch(batch)
        x0 = to_model_range(x, self.value_range)
        t, weights = self._draw_timesteps(x0.shape[0], x0.device)
        noise = torch.randn_like(x0)
        losses = self.diffusion.training_losses(self.unet, x0, t, noise=noise)
        loss = (losses["loss"] * weights).mean()
        self._update_sampler(t, losses["loss"])
        parts = {"mse": (losses["mse"] * weights).mean().detach(), "vb": (losses["vb"] * weights).mean().detach()}
        cls = self.config.classifier
        if not cls.train:  # diffusion loss only (domain adaptation): labels are neither needed nor read
            return Output(loss, parts)
        target, labelled = self.targets(batch)
        ce, accuracy, used = self._classifier_term(x0, target, labelled, t, noise)
        parts.update(ce=ce.detach(), accuracy=accuracy, labelled=torch.tensor(float(used)))
        return Output(loss + cls.weight * ce, parts)

    def _classifier_term(self, x0, target, labelled, t, noise):
        """L_class of the step (module docstring): (loss, train accuracy, images it used)."""
        cls = self.config.classifier
        x_l, y_l, t_l, noise_l = x0[labelled], target[labelled], t[labelled], noise[labelled]
        if self.label_buffer is not None and self.training:
            released = self.label_buffer.push(x_l, y_l)
            if released is None:
                zero = x0.sum() * 0.0
                return zero, torch.tensor(float("nan")), 0
            x_l, y_l = released
            t_l, _ = self._draw_timesteps(len(x_l), x0.device)  # released images get a fresh t and noise
            noise_l = torch.randn_like(x_l)
        if len(x_l) == 0:
            return x0.sum() * 0.0, torch.tensor(float("nan")), 0
        if cls.noisy == "reference":  # CE on x_t at the diffusion's own t replaces the clean term
            ce, logits = self.class_loss(self.diffusion.q_sample(x_l, t_l, noise_l), y_l, t_l)
        else:
            ce, logits = self.class_loss(x_l, y_l)
            if cls.noisy == "thesis" and self.noisy_timesteps is None:  # Eq. 6.10, 𝒯 = {1…T−1}, one term per image
                t_n = t_l.clamp(min=1)
                ce = ce + self.class_loss(self.diffusion.q_sample(x_l, t_n, noise_l), y_l, t_n)[0]
            elif cls.noisy == "thesis":  # Eq. 6.10 over the given 𝒯
                for tau in self.noisy_timesteps:
                    t_tau = torch.full((len(x_l),), tau, dtype=torch.long, device=x_l.device)
                    ce = ce + self.class_loss(self.diffusion.q_sample(x_l, t_tau), y_l, t_tau)[0]
        with torch.no_grad():
            hits = (logits > 0).float() == y_l if self.multi_label else logits.argmax(1) == y_l
        return ce, hits.float().mean(), len(x_l)

    # ----------------------------------------------------------------------- sampling
    def conditional_model(self, target: torch.Tensor, alpha: float, *, on_step=None,
                          step: str | None = None) -> OptimisedRepresentations:
        """The model callable of Alg. 1 for the sampling loops (targets already checked); `step`
        replaces `config.sampling_step`."""
        return OptimisedRepresentations(self.unet.encode, self.unet.decode, self.classify_features, target, alpha,
                                        on_step=on_step, step=step or self.config.sampling_step)

    @torch.no_grad()
    def sample(self, n: int, cond: torch.Tensor | None = None, *, alpha: float | None = None,
               noise: torch.Tensor | None = None, generator: torch.Generator | None = None, progress: bool = False,
               on_step=None, step: str | None = None) -> torch.Tensor:
        """n images (n×C×H×W in `value_range`). Without `cond`: unconditional (as a DDGM). With
        `cond` (int64 classes (n,), or attributes n×A): conditional sampling by optimised
        representations (Alg. 1) with step size `alpha` (default `config.sampling_alpha`), in eval
        mode. `on_step(t, probabilities)` sees the classifier's decision at every step; `step`
        replaces `config.sampling_step` (the sign of the update)."""
        if cond is None:
            if alpha is not None:
                raise InputError("alpha sets conditional sampling: pass the target classes as cond")
            return super().sample(n, noise=noise, generator=generator, progress=progress)
        if n < 1:
            raise InputError(f"n must be an integer >= 1, got {n!r}")
        target = self.check_target(cond, n)
        alpha = self.config.sampling_alpha if alpha is None else alpha
        with self.evaluating():
            model = self.conditional_model(target, alpha, on_step=on_step, step=step)
            x0 = reverse_diffusion(self.sampling_diffusion, model, (n, *self.image_shape), sampler=self.config.sampler,
                                   eta=self.config.ddim_eta, clip_denoised=self.config.clip_denoised, noise=noise,
                                   generator=generator, device=self.device, progress=progress)
        return from_model_range(x0, self.value_range)
