"""Cost of the joint diffusion model against the plain DDGM of the same UNet, in one process.

Measures, interleaved so that machine load hits every variant alike (median of `--repeats` timings):
- a training step (forward + backward + AdamW step) of the DDGM, of the joint model (diffusion loss
  + the classifier path: augmentation, one more encoder pass on x_0 at t = 0, head, CE), and of the
  head alone (forward + backward on pooled features of the batch), as a share of the joint step;
- a sampling step, unconditional vs conditional by optimised representations (encode, the head's
  gradient w.r.t. every tensor of Z_t, decode).

    python benchmarks/bench_joint_diffusion.py                # the `cpu` scale UNet at 16×16, batch 64
    python benchmarks/bench_joint_diffusion.py --image-size 28 --channels 64 --mult 1,2,2 --res-blocks 3
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
from bench_unet_vs_diffusers import median_s  # the shared timer; the script folder is on sys.path

from genrep.models.ddgm import DDGM, DDGMConfig, UNetSettings
from genrep.models.joint_diffusion import JointDiffusion, JointDiffusionConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--mult", default="1,2")
    p.add_argument("--res-blocks", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=200, help="diffusion length T")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    unet = UNetSettings(model_channels=args.channels, channel_mult=tuple(int(m) for m in args.mult.split(",")),
                        num_res_blocks=args.res_blocks, attention_resolutions=(), middle_attention=False, dropout=0.1)
    shape = (1, args.image_size, args.image_size)
    ddgm = DDGM(DDGMConfig(steps=args.steps, unet=unet, clip_denoised=False), image_shape=shape)
    joint = JointDiffusion(JointDiffusionConfig(steps=args.steps, unet=unet), image_shape=shape, num_classes=10)
    batch = {"x": torch.rand(args.batch, *shape), "y": torch.randint(0, 10, (args.batch,))}

    def train_step(model, optimizer):
        def step():
            optimizer.zero_grad()
            model(batch).loss.backward()
            optimizer.step()
        return step

    with torch.no_grad():
        t0 = torch.zeros(args.batch, dtype=torch.long)
        z = joint.head_input(*joint.unet.encode(batch["x"] * 2 - 1, t0), t0)
    head_optimizer = torch.optim.AdamW(joint.head.parameters(), lr=1e-4)

    def head_step():
        head_optimizer.zero_grad()
        torch.nn.functional.cross_entropy(joint.head(z), batch["y"]).backward()
        head_optimizer.step()

    x_t = torch.randn(args.batch, *shape)
    t = torch.full((args.batch,), args.steps // 2, dtype=torch.long)
    conditional = joint.conditional_model(batch["y"], 200.0)

    def sample_step(model):
        def step():
            with torch.no_grad():
                joint.sampling_diffusion.p_sample(model, x_t, t, clip_denoised=False)
        return step

    ddgm_step = train_step(ddgm, torch.optim.AdamW(ddgm.parameters(), lr=1e-4))
    joint_step = train_step(joint, torch.optim.AdamW(joint.parameters(), lr=1e-4))
    results: dict[str, list[float]] = {k: [] for k in ("ddgm_step", "joint_step", "head_step", "uncond", "cond")}
    joint.train()
    ddgm.train()
    for _ in range(3):  # interleave the variants
        results["ddgm_step"].append(median_s(ddgm_step, args.repeats))
        results["joint_step"].append(median_s(joint_step, args.repeats))
        results["head_step"].append(median_s(head_step, args.repeats))
        joint.eval()
        results["uncond"].append(median_s(sample_step(joint.unet), args.repeats))
        results["cond"].append(median_s(sample_step(conditional), args.repeats))
        joint.train()
    med = {k: statistics.median(v) for k, v in results.items()}
    report = {
        "settings": vars(args), "feature_dim": joint.unet.feature_dim,
        "ddgm_step_s": round(med["ddgm_step"], 4), "joint_step_s": round(med["joint_step"], 4),
        "joint_over_ddgm": round(med["joint_step"] / med["ddgm_step"], 3),
        "head_step_s": round(med["head_step"], 5), "head_share_of_joint_step": round(med["head_step"] / med["joint_step"], 4),
        "uncond_sampling_step_s": round(med["uncond"], 4), "cond_sampling_step_s": round(med["cond"], 4),
        "cond_over_uncond": round(med["cond"] / med["uncond"], 3),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
