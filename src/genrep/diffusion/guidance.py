"""Guidance hooks for the reverse process: classifier guidance and optimised representations.

Both plug into the public sampling loops of `GaussianDiffusion` (`p_sample_loop`, `ddim_sample_loop`,
`sample_loop`, also on a `SpacedDiffusion`) without touching the process:

- `classifier_guidance(classifier, y, scale)` is a `cond_fn` (Dhariwal & Nichol 2021, thesis
  Eq. 6.12): ∇_{x_t} s·Σ_i log c(y_i | x_t,i, t); the process adds Σ·∇ to the ancestral mean
  (`condition_mean`) or shifts ε̂ by −√(1−ᾱ_t)·∇ for DDIM (`condition_score`).
- `OptimisedRepresentations` is a model wrapper (thesis Alg. 1, joint diffusion ch. 6.5.3): at
  every step it encodes x_t into Z_t = (h, skips), takes one gradient step on *every* tensor of Z_t
  (the middle block and each skip), Z' = Z + α·∇_Z CE_sum(g(Z), y), and decodes ε̂ from Z'.
  With CE = −log g(y|Z) this is Z − α∇_Z Σ log g(y|Z): the sign of the reference code
  (`image_sample_with_classifier.py`), which the thesis verified to work for ε-prediction (the
  noise estimate is pushed away from the class, so the image denoised by subtracting it moves
  toward it). α = 0 decodes the unchanged Z, i.e. exactly the plain model output.
  `step="descend-ce"` is the other reading, the thesis prose's rule for ε-prediction models
  (Z' = Z + α∇_Z log g(y|Z) = Z − α∇_Z CE: move the representation toward the class); which one
  raises p(y) on a given model is measured in benchmarks/RESULTS.md ("Joint diffusion").
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from genrep.errors import ConfigError, InputError

STEPS = {"ascend-ce": 1.0, "descend-ce": -1.0}  # the sign of α∇_Z CE_sum in Z' = Z ± α∇_Z CE_sum


def _check_alpha(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InputError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def classification_loss_sum(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Σ_i CE(logits_i, y_i) for int64 labels (N,), or Σ BCE-with-logits for multi-label {0,1}
    targets N×A (CelebA attributes): the batch sum, not the mean (the reference's `reduction="sum"`,
    so each sample's gradient does not shrink with the batch size)."""
    if target.is_floating_point():
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="sum")
    return F.cross_entropy(logits, target, reduction="sum")


def classifier_guidance(classifier: Callable, y: torch.Tensor, scale: float = 1.0) -> Callable:
    """cond_fn(x_t, t) = s·∇_{x_t} Σ_i log softmax(c(x_t, t))_i[y_i] (Eq. 6.12; guided-diffusion's
    `cond_fn`). classifier(x_t, t) → logits N×K; y (N,) int64; returns a tensor shaped like x_t."""
    scale = _check_alpha("classifier guidance scale", scale)

    def cond_fn(x_t: torch.Tensor, t: torch.Tensor, **_) -> torch.Tensor:
        x = x_t.detach().requires_grad_(True)
        log_probs = F.log_softmax(classifier(x, t), dim=-1)
        selected = log_probs[torch.arange(len(y), device=x.device), y.to(x.device)]
        return torch.autograd.grad(selected.sum(), x)[0] * scale

    return cond_fn


class OptimisedRepresentations:
    """ε̂(x_t, t) = decode(Z + α∇_Z CE_sum(classify(Z, t), y), t), Z = encode(x_t, t) (Alg. 1).

    encode(x_t, t) → (h, skips); decode(h, skips, t) → model output; classify(h, skips, t) →
    logits. `target`: int64 labels (N,) (or {0,1} attributes N×A for multi-label heads), one per
    image of the batch being sampled. `alpha` ≥ 0 (thesis sweet spot 100–250, reference default
    1000). `on_step(t, probabilities)` is called at every step with the classifier's
    probabilities (N×K, before the update) on the current x_t, e.g. for the decision-vs-step
    picture (Fig. 6.6.3). The wrapped callable is what the sampling loops call; it enables
    gradients itself, so it works inside their `torch.no_grad()`. `step`: "ascend-ce" (Z + α∇CE,
    the reference code and Alg. 1 as printed; default) or "descend-ce" (Z − α∇CE, the thesis prose).
    """

    def __init__(self, encode: Callable, decode: Callable, classify: Callable, target: torch.Tensor, alpha: float,
                 *, on_step: Callable[[torch.Tensor, torch.Tensor], None] | None = None, step: str = "ascend-ce"):
        if step not in STEPS:
            raise ConfigError(f"the representation step must be one of {', '.join(STEPS)}, got {step!r}")
        self.encode, self.decode, self.classify = encode, decode, classify
        self.target, self.alpha, self.on_step = target, _check_alpha("alpha", alpha), on_step
        self.signed_alpha = STEPS[step] * self.alpha

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, **_) -> torch.Tensor:
        if len(self.target) != x_t.shape[0]:
            raise InputError(f"conditional sampling has {len(self.target)} targets for a batch of {x_t.shape[0]}")
        with torch.no_grad():
            h, skips = self.encode(x_t, t)
        if self.alpha == 0 and self.on_step is None:
            with torch.no_grad():
                return self.decode(h, skips, t)
        with torch.enable_grad():
            h = h.detach().requires_grad_(True)
            skips = [s.detach().requires_grad_(True) for s in skips]
            logits = self.classify(h, skips, t)
            if self.on_step is not None:
                probs = torch.sigmoid(logits) if self.target.is_floating_point() else logits.softmax(-1)
                self.on_step(t, probs.detach())
            if self.alpha != 0:
                grads = torch.autograd.grad(classification_loss_sum(logits, self.target), [h, *skips])
                h = h + self.signed_alpha * grads[0]
                skips = [s + self.signed_alpha * g for s, g in zip(skips, grads[1:])]
        with torch.no_grad():
            return self.decode(h.detach(), [s.detach() for s in skips], t)
