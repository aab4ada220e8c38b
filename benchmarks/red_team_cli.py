"""Red-team harness: feed the `genrep` CLI bad user inputs and check that each is refused clearly.

What it does
------------
1. Builds, in a temporary folder T, the fixtures the cases need: a tiny trained VAE run (digits,
   2 steps), a tiny DDGM run, a tiny conditional calorimeter VAE, a tiny continual run
   (finetune on split-digits, smoke scale, 1 epoch), copies of them with corrupted parts
   (truncated checkpoint / safetensors, corrupt data_spec.json / config.yaml, a pickle with a code
   object in place of a checkpoint), corrupt and unsafe files (truncated weights, garbage .npz, an
   .npz with an object array, pickles whose `__reduce__` calls `os.system` saved as .pt / .ckpt /
   .npz), bad YAML configs, image folders with mixed sizes, particle CSVs with NaN / negative /
   1e12 energies, a file standing where a folder is expected (so `T/afile/x` is unwritable even as
   root), ... The feature-extractor cache is a copy under T ($GENREP_DATA=T/cache), so no case can
   touch the real ~/.cache/genrep.
2. Runs every case of CASES: one bad invocation each, described as data
   (id, argv, keyword the message must contain, expect="error" | "warning" | "any").
   `$T` in argv is the fixture folder, `$OUT` a fresh output path for the case (T/out/ID) and
   `$TR` the cheap training flags `--steps 2 --no-progress --out $OUT`.
3. Classifies each outcome:
   CLEAR        exit status != 0 (and != 1, an uncaught exception), no "Traceback", and stderr's
                non-empty content is exactly one line `genrep: error: ...` (or an argparse usage
                error: `usage: ...` lines then `genrep ...: error: ...`, exit 2) whose text matches
                the case's keyword (a case-insensitive regular expression);
   EXPECTED_OK  exit 0 where success is acceptable (expect "warning"/"any") with a
                `genrep: warning: ...` line that matches the keyword;
   TRACEBACK    a Python traceback was printed;
   SILENT       exit 0 on an input that should have been refused (or warned about);
   UNSAFE       the pickled `os.system` payload of an unsafe file actually ran;
   UNCLEAR      anything else: several lines, no `genrep:` prefix, a message without the keyword,
                exit status 1, killed by a signal (e.g. the memory limit), a timeout.
   expect="any" accepts a CLEAR refusal or an EXPECTED_OK warning.
4. Prints a Markdown table (case id, command, outcome, first line of stderr, at most 120
   characters), the details (full stderr, where a traceback originates) of every case that is not
   CLEAR / EXPECTED_OK, and a summary line
   `red team: N cases, C clear, T tracebacks, S silent, U unclear`.

Every case runs with OMP_NUM_THREADS=1, a 6 GiB address-space limit (so `latent_dim=100000000` or
`-n 100000000` cannot take the machine down; hitting it shows up as a failure of that case) and a
per-case timeout, in its own process group, with the working directory T/cwd.

Run
---
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/red_team_cli.py             # all cases, ~2 min on 2 cores
    .venv/bin/python benchmarks/red_team_cli.py --only 'sample|evaluate'      # ids matching a regex
    .venv/bin/python benchmarks/red_team_cli.py --keep /tmp/rt                # keep the fixtures there
    .venv/bin/python benchmarks/red_team_cli.py --exec --jobs 2               # the real console script per case (+~4 s a case)
    .venv/bin/python benchmarks/red_team_cli.py --json /tmp/rt.json           # also every result as JSON

By default each case runs in a process forked from one that has already imported genrep and torch
(`main(argv)` exactly as the console script calls it, an uncaught exception printed by the default
hook, exit status 1), which saves the ~3 s import per case; `--exec` runs `.venv/bin/genrep` (or
`python -m genrep`) instead. Exit status: 0 when every case is CLEAR or EXPECTED_OK, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEMORY_LIMIT = 6 * 2**30  # bytes of address space per case
MARKER = "PWNED"  # the unsafe pickles' payload touches T/PWNED


# --------------------------------------------------------------------------------------------- cases
@dataclass
class Case:
    id: str
    argv: str  # shell-like; $T, $OUT, $TR are substituted, then shlex-split
    keyword: str  # regex (case-insensitive) the error / warning line must match
    expect: str = "error"  # "error": must be refused; "warning": exit 0 + warning is fine; "any": either
    note: str = ""


def C(id, argv, keyword, expect="error", note=""):
    return Case(id, argv, keyword, expect, note)


VAE = "train vae --dataset digits $TR --set model.hidden=[16]"
DDGM = ("train ddgm --dataset digits $TR --set model.steps=30 --set model.unet.model_channels=8 "
        "--set model.unet.num_res_blocks=1 --set model.unet.channel_mult=[1]")
EVAL = "evaluate --real digits --fake $T/run --n 32 --metrics fid --no-progress -o $OUT/eval.json"
REC = "analyze reconstruction --dataset digits --steps 50 --n 16 --points 3 --out $OUT"
VLB = "analyze vlb-share $T/ddgm --n 8 --no-progress --out $OUT"
SW = "analyze switching $T/ddgm --dae-steps 2 --n 16 --switch-log-snr 2 --no-progress --out $OUT"
CL = "continual finetune --scenario split-digits --scale smoke --no-progress --set epochs=1"
SIM = "simulate $T/calo --no-progress -o $OUT/resp.npz"

CASES: list[Case] = [
    # --- top level / argparse
    C("cli-no-command", "", r"COMMAND|required"),
    C("cli-unknown-command", "bogus", r"bogus"),
    C("cli-unknown-flag", "--bogus-flag", r"bogus-flag"),
    # --- data
    C("data-list-extra-arg", "data list extra", r"extra"),
    C("data-bad-action", "data bogus", r"bogus"),
    C("data-info-unknown", "data info nope", r"nope"),
    C("data-preview-unknown", "data preview nope -o $OUT/p.png", r"nope"),
    C("data-info-npz-no-path", "data info npz", r"path"),
    C("data-info-npz-missing", "data info npz --path $T/missing.npz", r"missing\.npz"),
    C("data-info-npz-garbage", "data info npz --path $T/bad/garbage.npz", r"garbage\.npz"),
    C("data-info-npz-truncated", "data info npz --path $T/bad/truncated.npz", r"truncated\.npz"),
    C("data-info-npz-object", "data info npz --path $T/bad/object.npz", r"object\.npz"),
    C("data-info-npz-evil", "data info npz --path $T/bad/evil.npz", r"evil\.npz"),
    C("data-info-npz-nan", "data info npz --path $T/bad/nan_images.npz", r"nan"),
    C("data-info-npz-255", "data info npz --path $T/bad/float255.npz", r"\[0, 1\]|range|255"),
    C("data-info-npz-1d", "data info npz --path $T/bad/images_1d.npz", r"images"),
    C("data-info-npz-no-images-key", "data info npz --path $T/bad/no_images_key.npz", r"images"),
    C("data-info-npz-empty", "data info npz --path $T/bad/empty_images.npz", r"no images|empty|images"),
    C("data-info-npz-bad-labels", "data info npz --path $T/bad/neg_labels.npz", r"labels"),
    C("data-info-npz-is-folder", "data info npz --path $T/adir", r"adir"),
    C("data-info-imgs-mixed", "data info image_folder --path $T/imgs_mixed", r"size|×"),
    C("data-info-imgs-empty", "data info image_folder --path $T/imgs_empty", r"imgs_empty|no class"),
    C("data-info-imgs-not-image", "data info image_folder --path $T/imgs_corrupt", r"bad\.png"),
    C("data-info-imgs-is-file", "data info image_folder --path $T/afile", r"afile"),
    C("data-info-digits-with-path", "data info digits --path $T/adir", r"path", "any",
      "digits takes no path: refusing or warning are both fine, ignoring it silently is not"),
    C("data-info-calo-garbage", "data info calorimeter --path $T/bad/garbage.npz", r"garbage\.npz"),
    C("data-preview-n-zero", "data preview digits -n 0 -o $OUT/p.png", r"-n"),
    C("data-preview-n-negative", "data preview digits -n -5 -o $OUT/p.png", r"-n"),
    C("data-preview-n-string", "data preview digits -n abc -o $OUT/p.png", r"abc"),
    C("data-preview-bad-split", "data preview digits --split bogus -o $OUT/p.png", r"bogus"),
    C("data-preview-out-parent-file", "data preview digits -n 4 -o $T/afile/p.png", r"afile"),
    C("data-preview-out-is-dir", "data preview digits -n 4 -o $T/adir", r"adir"),
    C("data-preview-out-bad-ext", "data preview digits -n 4 -o $OUT/p.xyz", r"xyz|png|extension", "any"),
    # --- train: names
    C("train-unknown-model", "train nomodel --dataset digits $TR", r"nomodel"),
    C("train-unknown-dataset", "train vae --dataset nope $TR", r"nope"),
    # --- train: --set keys and values
    C("train-set-unknown-key", f"{VAE} --set model.bogus=3", r"bogus"),
    C("train-set-unknown-section", f"{VAE} --set bogus=3", r"bogus"),
    C("train-set-unknown-nested", f"{VAE} --set model.latent_dim.x=3", r"latent_dim"),
    C("train-set-no-equals", f"{VAE} --set model.latent_dim", r"latent_dim"),
    C("train-set-empty-key", f"{VAE} --set =3", r"=3|key"),
    C("train-set-empty-value", f"{VAE} --set model.latent_dim=", r"latent_dim"),
    C("train-latent-negative", f"{VAE} --set model.latent_dim=-4", r"latent_dim"),
    C("train-latent-zero", f"{VAE} --set model.latent_dim=0", r"latent_dim"),
    C("train-latent-huge", f"{VAE} --set model.latent_dim=100000000", r"latent_dim"),
    C("train-latent-nan", f"{VAE} --set model.latent_dim=nan", r"latent_dim"),
    C("train-latent-string", f"{VAE} --set model.latent_dim=abc", r"latent_dim"),
    C("train-latent-list", f"{VAE} --set model.latent_dim=[1,2]", r"latent_dim"),
    C("train-latent-float", f"{VAE} --set model.latent_dim=3.5", r"latent_dim"),
    C("train-latent-bool", f"{VAE} --set model.latent_dim=true", r"latent_dim"),
    C("train-hidden-scalar", "train vae --dataset digits $TR --set model.hidden=16", r"hidden"),
    C("train-hidden-negative", "train vae --dataset digits $TR --set model.hidden=[-3]", r"hidden"),
    C("train-hidden-zero", "train vae --dataset digits $TR --set model.hidden=[0]", r"hidden"),
    C("train-hidden-bad-yaml", "train vae --dataset digits $TR --set model.hidden=[16", r"hidden"),
    C("train-beta-negative", f"{VAE} --set model.beta=-1", r"beta"),
    C("train-beta-nan", f"{VAE} --set model.beta=nan", r"beta"),
    C("train-beta-inf", f"{VAE} --set model.beta=inf", r"beta"),
    C("train-arch-unknown", f"{VAE} --set model.arch=bogus", r"bogus|arch"),
    C("train-likelihood-unknown", f"{VAE} --set model.likelihood=bogus", r"bogus|likelihood"),
    C("train-gaussian-std-zero", f"{VAE} --set model.likelihood=gaussian --set model.gaussian_std=0", r"gaussian_std"),
    C("train-width-zero", f"{VAE} --set model.width=0", r"width"),
    C("train-arch-mnist-on-8px", f"{VAE} --set model.arch=mnist", r"mnist|28|8"),
    C("train-optimizer-unknown", f"{VAE} --set train.optimizer=bogus", r"bogus|optimizer"),
    C("train-scheduler-unknown", f"{VAE} --set train.scheduler=bogus", r"bogus|scheduler"),
    C("train-grad-clip-negative", f"{VAE} --set train.grad_clip=-1", r"grad_clip"),
    C("train-ema-decay-2", f"{VAE} --set train.ema_decay=2", r"ema_decay"),
    C("train-betas-short", f"{VAE} --set train.betas=[0.9]", r"betas"),
    C("train-betas-scalar", f"{VAE} --set train.betas=5", r"betas"),
    C("train-betas-out-of-range", f"{VAE} --set train.betas=[1.5,0.999]", r"betas"),
    C("train-weight-decay-negative", f"{VAE} --set train.weight_decay=-1", r"weight_decay"),
    C("train-log-every-negative", f"{VAE} --set train.log_every=-1", r"log_every"),
    C("train-value-range-unknown", f"{VAE} --set data.value_range=bogus", r"bogus|value_range"),
    C("train-val-fraction-big", f"{VAE} --set data.validation_fraction=1.5", r"validation.fraction"),
    C("train-val-fraction-negative", f"{VAE} --set data.validation_fraction=-0.1", r"validation.fraction"),
    C("train-limit-zero", f"{VAE} --set data.limit=0", r"limit", note="the message must name data.limit"),
    C("train-limit-negative", f"{VAE} --set data.limit=-3", r"limit"),
    C("train-image-size-zero", f"{VAE} --set data.image_size=0", r"image.size"),
    C("train-pad-to-smaller", f"{VAE} --set data.pad_to=4", r"pad"),
    C("train-strategy-unknown", f"{VAE} --set train.strategy=bogus", r"bogus|strategy"),
    # --- train: flags
    C("train-steps-zero", "train vae --dataset digits --steps 0 --no-progress --out $OUT", r"steps"),
    C("train-steps-negative", "train vae --dataset digits --steps -5 --no-progress --out $OUT", r"steps"),
    C("train-steps-string", "train vae --dataset digits --steps abc --no-progress --out $OUT", r"abc"),
    C("train-steps-float", "train vae --dataset digits --steps 1e3 --no-progress --out $OUT", r"1e3"),
    C("train-batch-zero", f"{VAE} --batch-size 0", r"batch"),
    C("train-batch-negative", f"{VAE} --batch-size -1", r"batch"),
    C("train-batch-huge", f"{VAE} --batch-size 100000000", r"batch", "any"),
    C("train-lr-negative", f"{VAE} --lr -1", r"lr"),
    C("train-lr-zero", f"{VAE} --lr 0", r"lr"),
    C("train-lr-nan", f"{VAE} --lr nan", r"lr"),
    C("train-lr-huge-diverges", f"{VAE} --lr 1e30", r"nan|inf|diverg|lr"),
    C("train-devices-zero", f"{VAE} --devices 0", r"devices"),
    C("train-devices-negative", f"{VAE} --devices -1", r"devices"),
    C("train-num-nodes-zero", f"{VAE} --num-nodes 0", r"num.nodes"),
    C("train-accelerator-unknown", f"{VAE} --accelerator bogus", r"bogus|accelerator"),
    C("train-accelerator-cuda-none", f"{VAE} --accelerator cuda", r"cuda|gpu"),
    C("train-precision-unknown", f"{VAE} --precision bogus", r"bogus|precision"),
    C("train-precision-16-cpu", f"{VAE} --precision 16-mixed", r"16|precision", "any"),
    C("train-overwrite-and-resume", f"{VAE} --overwrite --resume", r"overwrite|resume"),
    # --- train: config files
    C("train-config-missing", f"{VAE} --config $T/missing.yaml", r"missing\.yaml"),
    C("train-config-syntax", f"{VAE} --config $T/bad/syntax.yaml", r"syntax\.yaml"),
    C("train-config-unknown-key", f"{VAE} --config $T/bad/unknown_key.yaml", r"bogus_key"),
    C("train-config-not-mapping", f"{VAE} --config $T/bad/list.yaml", r"list\.yaml|mapping"),
    C("train-config-wrong-type", f"{VAE} --config $T/bad/wrong_type.yaml", r"latent_dim"),
    C("train-config-is-folder", f"{VAE} --config $T/adir", r"adir"),
    C("train-config-binary", f"{VAE} --config $T/run/model.safetensors", r"safetensors"),
    C("train-config-other-model", f"{VAE} --config $T/ddgm/config.yaml", r"ddgm|vae|model_name", "any"),
    # --- train: output folders and resume
    C("train-out-exists", "train vae --dataset digits --steps 2 --no-progress --out $T/run --set model.hidden=[16]",
      r"overwrite|exists"),
    C("train-out-is-file", "train vae --dataset digits --steps 2 --no-progress --out $T/afile", r"afile"),
    C("train-out-parent-file", "train vae --dataset digits --steps 2 --no-progress --out $T/afile/run", r"afile"),
    C("train-out-empty-string", "train vae --dataset digits --steps 2 --no-progress --out ''", r"out|''", "error"),
    C("train-resume-missing", "train vae --dataset digits --steps 2 --no-progress --resume --out $T/missing_run",
      r"missing_run"),
    C("train-resume-changed-latent",
      "train vae --dataset digits --steps 4 --no-progress --resume --out $T/r_latent --set model.hidden=[16] "
      "--set model.latent_dim=8", r"latent_dim"),
    C("train-resume-changed-dataset",
      "train vae --dataset mnist --steps 4 --no-progress --resume --out $T/r_data --set model.hidden=[16]",
      r"data|mnist"),
    C("train-resume-changed-model", "train wae --dataset digits --steps 4 --no-progress --resume --out $T/r_model",
      r"wae|vae|model"),
    C("train-resume-truncated-ckpt",
      "train vae --dataset digits --steps 4 --no-progress --resume --out $T/r_trunc --set model.hidden=[16]",
      r"last\.ckpt"),
    C("train-resume-evil-ckpt",
      "train vae --dataset digits --steps 4 --no-progress --resume --out $T/r_evil --set model.hidden=[16]",
      r"last\.ckpt|unsafe"),
    C("train-resume-no-ckpt",
      "train vae --dataset digits --steps 4 --no-progress --resume --out $T/r_nockpt --set model.hidden=[16]",
      r"checkpoint|last\.ckpt"),
    C("train-resume-empty-folder",
      "train vae --dataset digits --steps 4 --no-progress --resume --out $T/adir --set model.hidden=[16]",
      r"adir|checkpoint"),
    C("train-resume-fewer-steps",
      "train vae --dataset digits --steps 1 --no-progress --resume --out $T/r_steps --set model.hidden=[16]",
      r"steps", "any", "the checkpoint is at step 2; --steps 1 is less"),
    # --- train: data files and shapes
    C("train-npz-no-path", f"{VAE.replace('digits', 'npz')}", r"path"),
    C("train-npz-object", f"{VAE.replace('digits', 'npz')} --data-path $T/bad/object.npz", r"object\.npz"),
    C("train-npz-evil", f"{VAE.replace('digits', 'npz')} --data-path $T/bad/evil.npz", r"evil\.npz"),
    C("train-npz-nan", f"{VAE.replace('digits', 'npz')} --data-path $T/bad/nan_images.npz", r"nan"),
    C("train-npz-garbage", f"{VAE.replace('digits', 'npz')} --data-path $T/bad/garbage.npz", r"garbage\.npz"),
    C("train-imgs-mixed", f"{VAE.replace('digits', 'image_folder')} --data-path $T/imgs_mixed", r"size|×"),
    C("train-cvae-no-labels", "train cvae --dataset npz --data-path $T/npz28_nolabels.npz $TR --set model.hidden=[16]",
      r"label|class"),
    C("train-calo-arch-mnist", "train vae --dataset calorimeter $TR --set model.arch=mnist --set data.limit=64",
      r"mnist|44|28"),
    # --- train: other models
    C("train-ddgm-steps-10", DDGM.replace("model.steps=30", "model.steps=10"), r"model\.steps"),
    C("train-ddgm-steps-zero", DDGM.replace("model.steps=30", "model.steps=0"), r"model\.steps|steps"),
    C("train-ddgm-schedule-unknown", f"{DDGM} --set model.schedule=bogus", r"bogus|schedule"),
    C("train-ddgm-loss-unknown", f"{DDGM} --set model.loss=bogus", r"bogus|loss"),
    C("train-ddgm-channels-zero", f"{DDGM} --set model.unet.model_channels=0", r"model_channels"),
    C("train-ddgm-dropout-2", f"{DDGM} --set model.unet.dropout=2", r"dropout"),
    C("train-ddgm-sample-steps-big", f"{DDGM} --set model.sample_steps=1000", r"sample_steps"),
    C("train-ddgm-sampler-unknown", f"{DDGM} --set model.sampler=bogus", r"bogus|sampler"),
    C("train-daed-beta1-2", f"{DDGM.replace('ddgm', 'daed')} --set model.beta1=2", r"beta1"),
    C("train-e2e-preset-unknown", "train e2e-sae --dataset digits $TR --set model.sinkhorn_preset=bogus",
      r"bogus|sinkhorn_preset"),
    C("train-e2e-blur-negative", "train e2e-sae --dataset digits $TR --set model.sinkhorn_blur=-1", r"blur"),
    C("train-e2e-noise-unknown", "train e2e-sae --dataset digits $TR --set model.noise=bogus", r"bogus|noise"),
    # --- sample
    C("sample-missing-run", "sample $T/missing_run -n 4 -o $OUT/s.png", r"missing_run"),
    C("sample-run-is-file", "sample $T/afile -n 4 -o $OUT/s.png", r"afile"),
    C("sample-empty-folder", "sample $T/adir -n 4 -o $OUT/s.png", r"adir|config"),
    C("sample-continual-folder", "sample $T/cl -n 4 -o $OUT/s.png", r"cl\b|config"),
    C("sample-n-zero", "sample $T/run -n 0 -o $OUT/s.png", r"-n"),
    C("sample-n-negative", "sample $T/run -n -1 -o $OUT/s.png", r"-n"),
    C("sample-n-huge", "sample $T/run -n 100000000 -o $OUT/s.png", r"-n|memory"),
    C("sample-n-string", "sample $T/run -n many -o $OUT/s.png", r"many"),
    C("sample-out-parent-file", "sample $T/run -n 4 -o $T/afile/s.png", r"afile"),
    C("sample-out-is-dir", "sample $T/run -n 4 -o $T/adir", r"adir"),
    C("sample-out-bad-ext", "sample $T/run -n 4 -o $OUT/s.xyz", r"xyz|png|extension", "any"),
    C("sample-npz-parent-file", "sample $T/run -n 4 -o $OUT/s.png --npz $T/afile/s.npz", r"afile"),
    C("sample-labels-unconditional", "sample $T/run -n 4 --labels 1,2 -o $OUT/s.png", r"labels"),
    C("sample-labels-not-ints", "sample $T/calo -n 4 --labels a,b -o $OUT/s.png", r"labels"),
    C("sample-labels-on-vector-cond", "sample $T/calo -n 4 --labels 3 -o $OUT/s.png", r"labels"),
    C("sample-truncated-safetensors", "sample $T/r_trunc_st -n 4 -o $OUT/s.png", r"model\.safetensors"),
    C("sample-missing-safetensors", "sample $T/r_no_st -n 4 -o $OUT/s.png", r"model\.safetensors"),
    C("sample-pickle-safetensors", "sample $T/r_evil_st -n 4 -o $OUT/s.png", r"model\.safetensors"),
    C("sample-corrupt-data-spec", "sample $T/r_bad_spec -n 4 -o $OUT/s.png", r"data_spec\.json"),
    C("sample-mismatched-data-spec", "sample $T/r_spec_shape -n 4 -o $OUT/s.png", r"data_spec|shape|size"),
    C("sample-corrupt-config", "sample $T/r_bad_cfg -n 4 -o $OUT/s.png", r"config\.yaml"),
    C("sample-config-unknown-key", "sample $T/r_cfg_key -n 4 -o $OUT/s.png", r"bogus_key|config\.yaml"),
    C("sample-missing-config", "sample $T/r_no_cfg -n 4 -o $OUT/s.png", r"config\.yaml"),
    # --- evaluate
    C("eval-real-unknown", EVAL.replace("--real digits", "--real nope"), r"nope"),
    C("eval-real-bad-split", EVAL.replace("--real digits", "--real digits:bogus"), r"bogus"),
    C("eval-fake-missing", EVAL.replace("$T/run", "$T/missing_run"), r"missing_run"),
    C("eval-metric-unknown", EVAL.replace("--metrics fid", "--metrics fid,bogus"), r"bogus"),
    C("eval-metrics-empty", EVAL.replace("--metrics fid", "--metrics ''"), r"metric"),
    C("eval-features-unknown", f"{EVAL} --features bogus", r"bogus"),
    C("eval-features-missing-file", f"{EVAL} --features $T/missing.pt", r"missing\.pt"),
    C("eval-features-evil-pt", f"{EVAL} --features $T/bad/evil.pt", r"evil\.pt"),
    C("eval-features-evil-ckpt", f"{EVAL} --features $T/bad/evil.ckpt", r"evil\.ckpt"),
    C("eval-features-truncated", f"{EVAL} --features $T/bad/truncated.pt", r"truncated\.pt"),
    C("eval-features-safetensors-weights", f"{EVAL} --features $T/run/model.safetensors", r"safetensors"),
    C("eval-lenet-not-trained", "evaluate --real fashion_mnist --fake $T/npz28_nolabels.npz --n 32 --metrics fid "
      "--no-progress -o $OUT/eval.json", r"features train"),
    C("eval-lenet-other-size-run", EVAL.replace("--real digits", "--real mnist"), r"28|8×8|shape|size"),
    C("eval-lenet-other-size-npz", EVAL.replace("$T/run", "$T/npz28_nolabels.npz"), r"28|8×8|shape|size"),
    C("eval-fake-garbage", EVAL.replace("$T/run", "$T/bad/garbage.npz"), r"garbage\.npz"),
    C("eval-fake-object", EVAL.replace("$T/run", "$T/bad/object.npz"), r"object\.npz"),
    C("eval-fake-evil", EVAL.replace("$T/run", "$T/bad/evil.npz"), r"evil\.npz"),
    C("eval-fake-range-255", EVAL.replace("$T/run", "$T/bad/float255.npz"), r"\[0, 1\]|range"),
    C("eval-fake-range-pm1", EVAL.replace("$T/run", "$T/bad/pm1_8px.npz"), r"\[0, 1\]|range"),
    C("eval-fake-nan", EVAL.replace("$T/run", "$T/bad/nan_8px.npz"), r"nan|finite"),
    C("eval-fake-no-images-key", EVAL.replace("$T/run", "$T/bad/no_images_key.npz"), r"images"),
    C("eval-fake-imgs-mixed", EVAL.replace("$T/run", "$T/imgs_mixed"), r"size|×"),
    C("eval-fake-continual", EVAL.replace("$T/run", "$T/cl"), r"cl\b|config|images"),
    C("eval-fake-truncated-st", EVAL.replace("$T/run", "$T/r_trunc_st"), r"model\.safetensors"),
    C("eval-n-zero", EVAL.replace("--n 32", "--n 0"), r"--n|\bn\b"),
    C("eval-n-negative", EVAL.replace("--n 32", "--n -5"), r"--n|\bn\b"),
    C("eval-n-one", EVAL.replace("--n 32", "--n 1"), r"--n|\bn\b|sample|image", "any"),
    C("eval-n-huge", EVAL.replace("--n 32", "--n 100000000"), r"--n|\bn\b|297|images", "any"),
    C("eval-out-parent-file", EVAL.replace("-o $OUT/eval.json", "-o $T/afile/e.json"), r"afile"),
    C("eval-metric-channels-digits", EVAL.replace("--metrics fid", "--metrics channels"), r"channels|calorimeter"),
    C("eval-real-calo-vs-digits", EVAL.replace("--real digits", "--real calorimeter"), r"44|shape|size|8×8"),
    C("eval-missing-fake-flag", "evaluate --real digits", r"fake"),
    # --- features
    C("features-bad-action", "features bogus", r"bogus"),
    C("features-train-no-dataset", "features train", r"dataset"),
    C("features-train-unknown", "features train --dataset nope --no-progress", r"nope"),
    C("features-train-rgb-offline", "features train --dataset cifar10 --epochs 1 --no-progress", r"cifar10"),
    C("features-train-npz-no-path", "features train --dataset npz --epochs 1 --no-progress", r"path"),
    C("features-train-epochs-zero", "features train --dataset digits --epochs 0 --no-progress", r"epochs"),
    C("features-train-epochs-negative", "features train --dataset digits --epochs -1 --no-progress", r"epochs"),
    # --- simulate
    C("sim-nothing", "simulate", r"run|particles"),
    C("sim-not-calorimeter-run", "simulate $T/run --particles $T/p_ok.csv -o $OUT/r.npz", r"calorimeter|condition"),
    C("sim-ddgm-run", "simulate $T/ddgm --particles $T/p_ok.csv -o $OUT/r.npz", r"calorimeter|condition"),
    C("sim-missing-run", "simulate $T/missing_run --particles $T/p_ok.csv -o $OUT/r.npz", r"missing_run"),
    C("sim-particles-missing", f"{SIM} --particles $T/missing.csv", r"missing\.csv"),
    C("sim-particles-nan", f"{SIM} --particles $T/p_nan.csv", r"nan"),
    C("sim-particles-negative-energy", f"{SIM} --particles $T/p_negative.csv", r"energy"),
    C("sim-particles-huge-energy", f"{SIM} --particles $T/p_huge.csv", r"energy", "any"),
    C("sim-particles-missing-column", f"{SIM} --particles $T/p_no_charge.csv", r"charge"),
    C("sim-particles-text", f"{SIM} --particles $T/p_text.csv", r"abc"),
    C("sim-particles-header-only", f"{SIM} --particles $T/p_header_only.csv", r"no particles|empty|p_header_only"),
    C("sim-particles-binary-csv", f"{SIM} --particles $T/p_binary.csv", r"p_binary\.csv"),
    C("sim-particles-evil-npz", f"{SIM} --particles $T/bad/evil.npz", r"evil\.npz"),
    C("sim-particles-garbage-npz", f"{SIM} --particles $T/bad/garbage.npz", r"garbage\.npz"),
    C("sim-particles-wrong-shape", f"{SIM} --particles $T/p_shape5.npz", r"9|shape"),
    C("sim-particles-bad-ext", f"{SIM} --particles $T/p_ok.txt", r"p_ok\.txt|csv"),
    C("sim-compare-without-responses", f"{SIM} --particles $T/p_ok.csv --compare", r"compare|responses"),
    C("sim-bad-responses", f"{SIM} --particles $T/p_bad_responses.npz --compare", r"responses"),
    C("sim-n-per-particle-zero", f"{SIM} --particles $T/p_ok.csv --n-per-particle 0", r"n.per.particle"),
    C("sim-n-per-particle-negative", f"{SIM} --particles $T/p_ok.csv --n-per-particle -1", r"n.per.particle"),
    C("sim-batch-size-zero", f"{SIM} --particles $T/p_ok.csv --batch-size 0", r"batch"),
    C("sim-out-parent-file", "simulate $T/calo --no-progress --particles $T/p_ok.csv -o $T/afile/r.npz", r"afile"),
    C("sim-out-is-dir", "simulate $T/calo --no-progress --particles $T/p_ok.csv -o $T/adir", r"adir"),
    C("sim-export-zero", "simulate --export-particles 0 -o $OUT/p.npz", r"export|particles"),
    C("sim-export-negative", "simulate --export-particles -3 -o $OUT/p.npz", r"export|particles"),
    C("sim-export-with-run", "simulate $T/calo --export-particles 5 -o $OUT/p.npz", r"export-particles"),
    C("sim-export-out-parent-file", "simulate --export-particles 5 -o $T/afile/p.npz", r"afile"),
    # --- analyze snr
    C("snr-unknown-dataset", "analyze snr --dataset nope --steps 50 --out $OUT", r"nope"),
    C("snr-unknown-schedule", "analyze snr --dataset digits --schedule bogus --steps 50 --out $OUT", r"bogus"),
    C("snr-steps-zero", "analyze snr --dataset digits --steps 0 --out $OUT", r"steps"),
    C("snr-steps-negative", "analyze snr --dataset digits --steps -10 --out $OUT", r"steps"),
    C("snr-steps-huge", "analyze snr --dataset digits --steps 100000000 --out $OUT", r"steps"),
    C("snr-n-zero", "analyze snr --dataset digits --steps 50 --n 0 --out $OUT", r"--n|\bn\b"),
    C("snr-n-negative", "analyze snr --dataset digits --steps 50 --n -1 --out $OUT", r"--n|\bn\b"),
    C("snr-bad-split", "analyze snr --dataset digits --steps 50 --split bogus --out $OUT", r"bogus"),
    C("snr-out-is-file", "analyze snr --dataset digits --steps 50 --out $T/afile", r"afile"),
    C("snr-out-parent-file", "analyze snr --dataset digits --steps 50 --out $T/afile/snr", r"afile"),
    C("snr-missing-out", "analyze snr --dataset digits --steps 50", r"out"),
    C("snr-bad-average", "analyze snr --dataset digits --steps 50 --average bogus --out $OUT", r"bogus"),
    C("analyze-unknown", "analyze bogus", r"bogus"),
    # --- analyze reconstruction
    C("rec-no-dataset", "analyze reconstruction --steps 50 --n 16 --out $OUT", r"dataset"),
    C("rec-unknown-method", f"{REC} --method bogus", r"bogus"),
    C("rec-unknown-schedule", f"{REC} --schedule bogus", r"bogus"),
    C("rec-steps-zero", REC.replace("--steps 50", "--steps 0"), r"steps"),
    C("rec-t-values-too-big", f"{REC} --t-values 5000", r"5000|t-values"),
    C("rec-t-values-negative", f"{REC} --t-values -1", r"-1|t-values"),
    C("rec-max-fraction-2", f"{REC} --max-fraction 2", r"max.fraction"),
    C("rec-max-fraction-nan", f"{REC} --max-fraction nan", r"max.fraction"),
    C("rec-points-zero", REC.replace("--points 3", "--points 0"), r"points"),
    C("rec-n-zero", REC.replace("--n 16", "--n 0"), r"--n"),
    C("rec-n-fit-zero", f"{REC} --method gaussian --n-fit 0", r"n.fit"),
    C("rec-image-size-zero", f"{REC} --image-size 0", r"image.size"),
    C("rec-image-size-negative", f"{REC} --image-size -4", r"image.size"),
    C("rec-eval-unknown", f"{REC} --eval-dataset nope", r"nope"),
    C("rec-eval-other-size", f"{REC} --method gaussian --eval-dataset mnist", r"28|8|size|shape|resiz", "any",
      "a Gaussian fitted to 8×8 digits, evaluated on 28×28 MNIST without --image-size"),
    C("rec-run-not-ddgm", "analyze reconstruction --run $T/run --n 16 --points 3 --out $OUT", r"ddgm|vae"),
    C("rec-run-missing", "analyze reconstruction --run $T/missing_run --n 16 --points 3 --out $OUT", r"missing_run"),
    C("rec-run-with-method", "analyze reconstruction --run $T/ddgm --method gaussian --n 16 --points 3 --out $OUT",
      r"--method"),
    C("rec-run-other-size", "analyze reconstruction --run $T/ddgm --eval-dataset mnist --n 16 --points 3 --out $OUT",
      r"mnist|28|shape"),
    C("rec-out-is-file", REC.replace("$OUT", "$T/afile"), r"afile"),
    # --- analyze vlb-share
    C("vlb-not-ddgm", "analyze vlb-share $T/run --n 8 --no-progress --out $OUT", r"vae|ddgm"),
    C("vlb-missing-run", "analyze vlb-share $T/missing_run --n 8 --no-progress --out $OUT", r"missing_run"),
    C("vlb-levels-string", f"{VLB} --levels bogus", r"levels"),
    C("vlb-levels-above-1", f"{VLB} --levels 1.5", r"levels"),
    C("vlb-levels-nan", f"{VLB} --levels nan", r"levels"),
    C("vlb-skip-first-negative", f"{VLB} --skip-first -1", r"skip.first"),
    C("vlb-skip-first-too-big", f"{VLB} --skip-first 1000", r"skip.first"),
    C("vlb-n-zero", VLB.replace("--n 8", "--n 0"), r"--n|\bn\b"),
    C("vlb-batch-size-zero", f"{VLB} --batch-size 0", r"batch"),
    C("vlb-other-size-dataset", f"{VLB} --dataset mnist", r"mnist|28|shape"),
    C("vlb-bad-split", f"{VLB} --split bogus", r"bogus"),
    C("vlb-out-is-file", VLB.replace("$OUT", "$T/afile"), r"afile"),
    C("vlb-truncated-weights", "analyze vlb-share $T/r_ddgm_trunc --n 8 --no-progress --out $OUT",
      r"model\.safetensors"),
    # --- analyze switching (every bad value must be caught before any DAE is trained)
    C("sw-not-ddgm", SW.replace("$T/ddgm", "$T/run"), r"ddgm|vae"),
    C("sw-missing-run", SW.replace("$T/ddgm", "$T/missing_run"), r"missing_run"),
    C("sw-log-snr-string", SW.replace("--switch-log-snr 2", "--switch-log-snr abc"), r"abc|switch.log.snr"),
    C("sw-log-snr-empty", SW.replace("--switch-log-snr 2", "--switch-log-snr ''"), r"switch.log.snr"),
    C("sw-log-snr-nan", SW.replace("--switch-log-snr 2", "--switch-log-snr nan"), r"nan|switch.log.snr"),
    C("sw-dae-steps-zero", SW.replace("--dae-steps 2", "--dae-steps 0"), r"dae.steps"),
    C("sw-dae-steps-negative", SW.replace("--dae-steps 2", "--dae-steps -1"), r"dae.steps"),
    C("sw-n-zero", SW.replace("--n 16", "--n 0"), r"--n|\bn\b"),
    C("sw-batch-size-zero", f"{SW} --batch-size 0", r"batch"),
    C("sw-lr-negative", f"{SW} --lr -1", r"lr"),
    C("sw-dae-channels-zero", f"{SW} --dae-channels 0", r"dae.channels",
      note="the user typed --dae-channels; a message naming only an internal key does not point at it"),
    C("sw-features-unknown", f"{SW} --features bogus", r"bogus"),
    C("sw-features-evil", f"{SW} --features $T/bad/evil.pt", r"evil\.pt"),
    C("sw-other-size-dataset", f"{SW} --dataset mnist", r"mnist|28|shape"),
    C("sw-out-is-file", SW.replace("$OUT", "$T/afile"), r"afile"),
    # --- analyze latent
    C("latent-missing-run", "analyze latent $T/missing_run --n 50 -o $OUT/l.png", r"missing_run"),
    C("latent-two-runs-no-out", "analyze latent $T/run $T/calo --n 50", r"-o"),
    C("latent-no-encoder", "analyze latent $T/ddgm --n 50 -o $OUT/l.png", r"encoder|ddgm"),
    C("latent-n-zero", "analyze latent $T/run --n 0 -o $OUT/l.png", r"--n|\bn\b"),
    C("latent-n-negative", "analyze latent $T/run --n -1 -o $OUT/l.png", r"--n|\bn\b"),
    C("latent-n-one", "analyze latent $T/run --n 1 -o $OUT/l.png", r"--n|\bn\b|2", "any"),
    C("latent-other-size-dataset", "analyze latent $T/run --dataset mnist --n 50 -o $OUT/l.png", r"mnist|28|shape"),
    C("latent-bad-split", "analyze latent $T/run --split bogus --n 50 -o $OUT/l.png", r"bogus"),
    C("latent-out-parent-file", "analyze latent $T/run --n 50 -o $T/afile/l.png", r"afile"),
    C("latent-method-unknown", "analyze latent $T/run --method umap --n 50 -o $OUT/l.png", r"umap"),
    C("latent-continual-folder", "analyze latent $T/cl --n 50 -o $OUT/l.png", r"cl\b|config"),
    # --- continual
    C("cl-unknown-method", "continual bogus --scenario split-digits --out $OUT", r"bogus"),
    C("cl-unknown-scenario", "continual finetune --scenario nope --scale smoke --no-progress --out $OUT", r"nope"),
    C("cl-unknown-scale", f"{CL} --scale bogus --out $OUT", r"bogus"),
    C("cl-seeds-zero", f"{CL} --seeds 0 --out $OUT", r"seeds"),
    C("cl-seeds-negative", f"{CL} --seeds -1 --out $OUT", r"seeds|-1"),
    C("cl-seeds-string", f"{CL} --seeds abc --out $OUT", r"seeds|abc"),
    C("cl-seeds-float", f"{CL} --seeds 1.5 --out $OUT", r"seeds|1\.5"),
    C("cl-seeds-duplicate", f"{CL} --seeds 0,0 --out $OUT", r"seeds|duplicate|0", "any"),
    C("cl-set-unknown", f"{CL} --set bogus=3 --out $OUT", r"bogus"),
    C("cl-set-no-equals", f"{CL} --set epochs --out $OUT", r"epochs"),
    C("cl-epochs-zero", f"{CL} --set epochs=0 --out $OUT", r"epochs"),
    C("cl-epochs-negative", f"{CL} --set epochs=-1 --out $OUT", r"epochs"),
    C("cl-epochs-string", f"{CL} --set epochs=abc --out $OUT", r"epochs"),
    C("cl-epochs-list", f"{CL} --set epochs=[1,2] --out $OUT", r"epochs"),
    C("cl-lr-nan", f"{CL} --set lr=nan --out $OUT", r"\blr\b"),
    C("cl-lr-negative", f"{CL} --set lr=-1 --out $OUT", r"\blr\b"),
    C("cl-batch-size-zero", f"{CL} --set batch_size=0 --out $OUT", r"batch_size"),
    C("cl-width-zero", f"{CL} --set width=0 --out $OUT", r"width"),
    C("cl-loss-unknown", f"{CL} --set loss=bogus --out $OUT", r"bogus|loss"),
    C("cl-device-cuda", f"{CL} --set device=cuda --out $OUT", r"cuda|device"),
    C("cl-setting-of-other-method", f"{CL} --set buffer_size=5 --out $OUT", r"buffer_size"),
    C("cl-er-buffer-negative", f"{CL.replace('finetune', 'er')} --set buffer_size=-5 --out $OUT", r"buffer_size"),
    C("cl-binplay-n-bits-zero", "continual binplay --scenario split-digits --scale smoke --no-progress "
      "--set n_bits=0 --out $OUT", r"n_bits"),
    C("cl-binplay-n-bits-too-few", "continual binplay --scenario split-digits --scale smoke --no-progress "
      "--set n_bits=3 --out $OUT", r"n_bits|bits"),
    C("cl-binplay-decoder-init-unknown", "continual binplay --scenario split-digits --scale smoke --no-progress "
      "--set decoder_init=bogus --out $OUT", r"bogus|decoder_init"),
    C("cl-gr-latent-huge", f"{CL.replace('finetune', 'gr')} --set latent_dim=100000000 --set gen_iters=1 --out $OUT",
      r"latent_dim"),
    C("cl-out-exists", f"{CL} --out $T/cl", r"resume|overwrite|exists"),
    C("cl-out-is-file", f"{CL} --out $T/afile", r"afile"),
    C("cl-out-parent-file", f"{CL} --out $T/afile/cl", r"afile"),
    C("cl-resume-and-overwrite", f"{CL} --resume --overwrite --out $T/cl_r_flags", r"overwrite|resume"),
    C("cl-resume-missing", f"{CL} --resume --out $T/missing_cl", r"missing_cl"),
    C("cl-resume-empty-folder", f"{CL} --resume --out $T/adir", r"adir"),
    C("cl-resume-changed-set", CL.replace("epochs=1", "epochs=2") + " --resume --out $T/cl_r_set", r"epochs"),
    C("cl-resume-changed-method", CL.replace("finetune", "joint") + " --resume --out $T/cl_r_method",
      r"finetune|joint|method"),
    C("cl-resume-changed-scenario", CL.replace("split-digits", "split-mnist") + " --resume --out $T/cl_r_scen",
      r"split-digits|split-mnist|scenario"),
    C("cl-resume-corrupt-config", f"{CL} --resume --out $T/cl_r_badcfg", r"config\.json"),
    C("cl-resume-evil-checkpoint", f"{CL} --resume --out $T/cl_r_evil", r"checkpoint\.pt|unsafe"),
    C("cl-resume-truncated-checkpoint", f"{CL} --resume --out $T/cl_r_trunc", r"checkpoint\.pt"),
    # --- reproduce (every bad input must fail before training)
    C("repro-unknown-table", "reproduce nope --no-progress --out $OUT", r"nope"),
    C("repro-unknown-scale", "reproduce table-4.3.1 --scale bogus --no-progress --out $OUT", r"bogus"),
    C("repro-seeds-zero", "reproduce table-4.3.1 --seeds 0 --no-progress --out $OUT", r"seeds"),
    C("repro-seeds-negative", "reproduce table-8.4.1 --seeds -2 --no-progress --out $OUT", r"seeds"),
    C("repro-seeds-string", "reproduce table-8.4.1 --seeds abc --no-progress --out $OUT", r"abc"),
    C("repro-celeba-path-wrong-table", "reproduce table-4.3.1 --celeba-path $T/adir --no-progress --out $OUT",
      r"celeba-path"),
    C("repro-celeba-path-missing", "reproduce table-4.4.1 --celeba-path $T/missing_celeba --no-progress --out $OUT",
      r"missing_celeba"),
    C("repro-calo-path-garbage", "reproduce table-4.3.1 --calorimeter-path $T/bad/garbage.npz --no-progress "
      "--out $OUT", r"garbage\.npz"),
    C("repro-calo-path-evil", "reproduce table-4.3.1 --calorimeter-path $T/bad/evil.npz --no-progress --out $OUT",
      r"evil\.npz"),
    C("repro-out-is-file", "reproduce table-8.4.1 --no-progress --out $T/afile", r"afile"),
    C("repro-out-parent-file", "reproduce table-8.4.1 --no-progress --out $T/afile/r", r"afile"),
    # --- demo (bad flags only)
    C("demo-steps-zero", "demo --steps 0 --no-progress --out $OUT", r"steps"),
    C("demo-steps-negative", "demo --steps -1 --no-progress --out $OUT", r"steps"),
    C("demo-steps-string", "demo --steps abc --no-progress --out $OUT", r"abc"),
    C("demo-out-is-file", "demo --steps 2 --no-progress --out $T/afile", r"afile"),
    C("demo-out-parent-file", "demo --steps 2 --no-progress --out $T/afile/demo", r"afile"),
    C("demo-out-exists", "demo --steps 2 --no-progress --out $T/run", r"exists|overwrite"),
    C("demo-unknown-flag", "demo --bogus", r"bogus"),
]


# ------------------------------------------------------------------------------------------ fixtures
class Evil:
    """Unpickling this runs `touch MARKER_PATH` (harmless, but proves code execution)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(self.marker)}",)


def truncate(src: Path, dst: Path, fraction: float = 0.5) -> None:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])


def write_csv(path: Path, header: list[str], rows) -> None:
    path.write_text(",".join(header) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))


def build_fixtures(T: Path, runner) -> None:
    import numpy as np
    import torch
    from PIL import Image

    t0 = time.perf_counter()
    for name in ("out", "cwd", "bad", "adir", "cache"):
        (T / name).mkdir(parents=True, exist_ok=True)
    (T / "afile").write_text("a file where a folder is expected\n")
    real_cache = Path(os.environ.get("GENREP_DATA_REAL", "~/.cache/genrep")).expanduser()
    if (real_cache / "features").is_dir():
        shutil.copytree(real_cache / "features", T / "cache" / "features", dirs_exist_ok=True)
    # trained runs (a failure here is a harness error, not a finding)
    builds = {
        "run": "train vae --dataset digits --steps 2 --out $T/run --no-progress --set model.hidden=[16]",
        "ddgm": ("train ddgm --dataset digits --steps 2 --out $T/ddgm --no-progress --set model.steps=30 "
                 "--set model.unet.model_channels=8 --set model.unet.num_res_blocks=1 "
                 "--set model.unet.channel_mult=[1]"),
        "calo": ("train cvae --dataset calorimeter --steps 2 --out $T/calo --no-progress --set model.hidden=[16] "
                 "--set data.limit=200"),
        "cl": "continual finetune --scenario split-digits --scale smoke --set epochs=1 --no-progress --out $T/cl",
        "particles": "simulate --export-particles 5 -o $T/p_ok.npz",
    }
    results = runner([(name, expand(argv, T, T / "out" / name)) for name, argv in builds.items()])
    for name, res in results.items():
        if res["rc"] != 0:
            sys.exit(f"red team: building fixture {name} failed (exit {res['rc']}):\n{res['stderr'][-3000:]}")
    run = T / "run"
    ckpt, weights = run / "checkpoints" / "last.ckpt", run / "model.safetensors"
    marker = str(T / MARKER)

    # corrupt / unsafe files
    bad = T / "bad"
    truncate(ckpt, bad / "truncated.ckpt")
    truncate(ckpt, bad / "truncated.pt")
    truncate(weights, bad / "truncated.safetensors")
    (bad / "garbage.npz").write_bytes(os.urandom(4096))
    np.savez(bad / "ok_digits.npz", images=np.random.default_rng(0).random((40, 8, 8), dtype=np.float32))
    truncate(bad / "ok_digits.npz", bad / "truncated.npz", 0.6)
    np.savez(bad / "object.npz", images=np.array([{"a": 1}, [1, 2]], dtype=object))
    np.savez(bad / "evil.npz", images=np.array([Evil(marker), 1], dtype=object),
             particles=np.array([Evil(marker)], dtype=object))
    (bad / "evil.ckpt").write_bytes(pickle.dumps({"model": Evil(marker)}))
    torch.save({"state_dict": Evil(marker)}, bad / "evil.pt")
    nan = np.random.default_rng(1).random((40, 8, 8)).astype(np.float32)
    nan[3, 2, 2] = np.nan
    np.savez(bad / "nan_images.npz", images=nan)
    np.savez(bad / "nan_8px.npz", images=nan[:, None])
    np.savez(bad / "float255.npz", images=np.random.default_rng(2).random((40, 8, 8)).astype(np.float32) * 255)
    np.savez(bad / "pm1_8px.npz", images=np.random.default_rng(3).random((40, 1, 8, 8)).astype(np.float32) * 2 - 1)
    np.savez(bad / "images_1d.npz", images=np.zeros(40, np.float32))
    np.savez(bad / "no_images_key.npz", x=np.zeros((40, 8, 8), np.float32))
    np.savez(bad / "empty_images.npz", images=np.zeros((0, 8, 8), np.float32))
    np.savez(bad / "neg_labels.npz", images=np.zeros((4, 8, 8), np.float32), labels=np.array([0, 1, -1, 2]))
    np.savez(T / "npz28_nolabels.npz", images=np.random.default_rng(4).random((40, 28, 28)).astype(np.float32))
    # configs
    (bad / "syntax.yaml").write_text("model:\n  latent_dim: [3\n  hidden: 16\n train: {steps: 2\n")
    (bad / "unknown_key.yaml").write_text("model:\n  bogus_key: 3\n")
    (bad / "list.yaml").write_text("- model\n- train\n")
    (bad / "wrong_type.yaml").write_text("model:\n  latent_dim: many\n")
        # image folders
    for sub in ("imgs_mixed/0", "imgs_mixed/1", "imgs_empty", "imgs_corrupt/0"):
        (T / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(T / "imgs_mixed/0/a.png")
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(T / "imgs_mixed/1/b.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(T / "imgs_corrupt/0/a.png")
    (T / "imgs_corrupt/0/bad.png").write_bytes(b"this is not a png\n" * 10)
    # particles
    cols = ["Energy", "Vx", "Vy", "Vz", "Px", "Py", "Pz", "mass", "charge"]
    arrays = np.load(T / "p_ok.npz")
    p = arrays["particles"]
    write_csv(T / "p_ok.csv", cols, p)
    shutil.copy(T / "p_ok.csv", T / "p_ok.txt")
    for name, value in (("p_nan", "nan"), ("p_negative", -100.0), ("p_huge", 1e12)):
        q = p.astype(object).copy()
        q[1, 0] = value
        write_csv(T / f"{name}.csv", cols, q)
    write_csv(T / "p_no_charge.csv", cols[:-1], p[:, :-1])
    q = p.astype(object).copy()
    q[2, 3] = "abc"
    write_csv(T / "p_text.csv", cols, q)
    write_csv(T / "p_header_only.csv", cols, [])
    (T / "p_binary.csv").write_bytes(b"\xff\xfe\x00\x00" + os.urandom(512))
    np.savez(T / "p_shape5.npz", particles=p[:, :5])
    np.savez(T / "p_bad_responses.npz", particles=p, responses=np.full((len(p), 10, 10), -1.0))

    # run copies with one broken part each
    def copy(src: str, dst: str) -> Path:
        shutil.copytree(T / src, T / dst)
        return T / dst

    for name in ("r_latent", "r_data", "r_model", "r_steps"):
        copy("run", name)
    truncate(ckpt, copy("run", "r_trunc") / "checkpoints" / "last.ckpt")
    torch.save({"model": Evil(marker)}, copy("run", "r_evil") / "checkpoints" / "last.ckpt")
    shutil.rmtree(copy("run", "r_nockpt") / "checkpoints")
    truncate(weights, copy("run", "r_trunc_st") / "model.safetensors")
    (copy("run", "r_no_st") / "model.safetensors").unlink()
    (copy("run", "r_evil_st") / "model.safetensors").write_bytes(pickle.dumps(Evil(marker)))
    (copy("run", "r_bad_spec") / "data_spec.json").write_text('{"name": "digits", "image_shape": [1, 8,')
    spec = json.loads((run / "data_spec.json").read_text())
    spec["image_shape"] = [3, 32, 32]
    (copy("run", "r_spec_shape") / "data_spec.json").write_text(json.dumps(spec))
    (copy("run", "r_bad_cfg") / "config.yaml").write_text("model_name: vae\nmodel: [unclosed\n")
    r = copy("run", "r_cfg_key")
    (r / "config.yaml").write_text((r / "config.yaml").read_text().replace("model:\n", "model:\n  bogus_key: 1\n", 1))
    (copy("run", "r_no_cfg") / "config.yaml").unlink()
    truncate(T / "ddgm" / "model.safetensors", copy("ddgm", "r_ddgm_trunc") / "model.safetensors")
    # continual copies: an interrupted run (no results/summary) with a broken checkpoint, etc.
    for name in ("cl_r_flags", "cl_r_set", "cl_r_method", "cl_r_scen"):
        copy("cl", name)
    (copy("cl", "cl_r_badcfg") / "config.json").write_text('{"method": "finetune", ')
    for name in ("cl_r_evil", "cl_r_trunc"):
        d = copy("cl", name)
        (d / "summary.json").unlink()
        (d / "seed0" / "results.json").unlink()
    torch.save({"learner": Evil(marker)}, T / "cl_r_evil" / "seed0" / "checkpoint.pt")
    truncate(T / "cl" / "seed0" / "checkpoint.pt", T / "cl_r_trunc" / "seed0" / "checkpoint.pt")
    assert zipfile.is_zipfile(bad / "evil.pt")
    print(f"fixtures built in {T} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)


# ------------------------------------------------------------------------------------------- running
def expand(argv: str, T: Path, out: Path) -> list[str]:
    text = argv.replace("$TR", "--steps 2 --no-progress --out $OUT").replace("$OUT", str(out)).replace("$T", str(T))
    return shlex.split(text)


def child_env(T: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", GENREP_DATA=str(T / "cache"), MPLBACKEND="Agg",
               PYTHONUNBUFFERED="1", COLUMNS="200")
    env.pop("PYTHONWARNINGS", None)
    return env


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def genrep_command() -> list[str]:
    script = Path(sys.executable).with_name("genrep")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "genrep"]


def exec_runner(T: Path, jobs: int, timeout: float):
    """Run each argv with the real console script (one process per case, `jobs` at a time)."""
    from concurrent.futures import ThreadPoolExecutor

    env, base = child_env(T), genrep_command()

    def one(argv):
        started = time.perf_counter()
        proc = subprocess.Popen(base + argv, cwd=T / "cwd", env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                preexec_fn=limit_memory)
        try:
            out, err = proc.communicate(timeout=timeout)
            rc, timed_out = proc.returncode, False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            rc, timed_out = proc.returncode, True
        return {"rc": rc, "stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace"),
                "timed_out": timed_out, "seconds": time.perf_counter() - started}

    def run(items):
        with ThreadPoolExecutor(jobs) as pool:
            futures = {key: pool.submit(one, argv) for key, argv in items}
            return {key: f.result() for key, f in futures.items()}
    return run


def fork_runner(T: Path, jobs: int, timeout: float):
    """Run each argv as `genrep.cli.main.main(argv)` in a child forked from this process (genrep and
    torch already imported), `jobs` at a time; same exit status and stderr as the console script."""
    os.environ.update(child_env(T))
    from genrep.cli.main import build_parser, main
    import torch  # noqa: F401  (the expensive import, done once)

    build_parser()  # imports every command module
    logs = T / "logs"
    logs.mkdir(exist_ok=True)

    def start(index: int, argv: list[str]) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            return pid
        code = 1
        try:
            os.setsid()
            limit_memory()
            os.chdir(T / "cwd")
            for fd, name in ((1, "out"), (2, "err")):
                f = os.open(logs / f"{index}.{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(f, fd)
                os.close(f)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            sys.argv = ["genrep", *argv]
            try:
                code = main(argv)
                code = 0 if code is None else code
            except SystemExit as exc:  # what sys.exit(main()) would do with it
                if exc.code is None:
                    code = 0
                elif isinstance(exc.code, int):
                    code = exc.code
                else:
                    print(exc.code, file=sys.stderr)
                    code = 1
            except BaseException:  # the interpreter's default: print the traceback, exit status 1
                traceback.print_exc()
                code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code if isinstance(code, int) else 1)

    def run(items):
        results, running, queue = {}, {}, list(enumerate(items))
        while queue or running:
            while queue and len(running) < jobs:
                index, (key, argv) = queue.pop(0)
                running[start(index, argv)] = {"index": index, "key": key, "started": time.perf_counter(),
                                               "timed_out": False}
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                now = time.perf_counter()
                for p, job in running.items():
                    if not job["timed_out"] and now - job["started"] > timeout:
                        job["timed_out"] = True
                        try:
                            os.killpg(p, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                time.sleep(0.02)
                continue
            if pid not in running:
                continue
            job = running.pop(pid)
            index = job["index"]
            results[job["key"]] = {"rc": os.waitstatus_to_exitcode(status),
                                   "stdout": (logs / f"{index}.out").read_text(errors="replace"),
                                   "stderr": (logs / f"{index}.err").read_text(errors="replace"),
                                   "timed_out": job["timed_out"], "seconds": time.perf_counter() - job["started"]}
        return results
    return run


# ----------------------------------------------------------------------------------------- classify
ARGPARSE_ERROR = re.compile(r"^genrep(?: [\w.-]+)*: error: ")
FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+), in (\S+)')


@dataclass
class Result:
    case: Case
    argv: list[str]
    rc: int
    stdout: str
    stderr: str
    seconds: float
    outcome: str = ""
    why: str = ""
    origin: str = ""
    executed: bool = False
    lines: list[str] = field(default_factory=list)


def origin_of(text: str) -> str:
    """'file:line in func' of the innermost traceback frame inside genrep (else the innermost)."""
    frames = [m.groups() for m in map(FRAME.match, text.splitlines()) if m]
    if not frames:
        return ""
    ours = [f for f in frames if "/src/genrep/" in f[0] or "site-packages/genrep/" in f[0]]
    file, line, func = (ours or frames)[-1]
    short = file.split("/src/")[-1] if "/src/" in file else file.split("site-packages/")[-1]
    last = frames[-1]
    deepest = "" if last == (file, line, func) else \
        f" (raised in {last[0].split('site-packages/')[-1].split('/src/')[-1]}:{last[1]} in {last[2]})"
    return f"{short}:{line} in {func}{deepest}"


def classify(r: Result, timed_out: bool) -> None:
    case = r.case
    r.lines = [line for line in r.stderr.splitlines() if line.strip()]
    keyword = re.compile(case.keyword, re.IGNORECASE)
    errors = [line for line in r.lines if line.startswith("genrep: error:")]
    warnings_ = [line for line in r.lines if line.startswith("genrep: warning:")]
    if r.executed:
        r.outcome, r.why = "UNSAFE", "the pickled os.system payload ran"
    elif "Traceback (most recent call last)" in r.stderr + r.stdout:
        r.outcome, r.why, r.origin = "TRACEBACK", "a traceback was printed", origin_of(r.stderr + r.stdout)
    elif timed_out:
        r.outcome, r.why = "UNCLEAR", "timed out"
    elif r.rc < 0:
        r.outcome, r.why = "UNCLEAR", f"killed by signal {-r.rc} ({signal.Signals(-r.rc).name})"
    elif r.rc == 0:
        ok = [w for w in warnings_ if keyword.search(w)]
        if case.expect in ("warning", "any") and ok:
            r.outcome = "EXPECTED_OK"
        elif case.expect in ("warning", "any") and warnings_:
            r.outcome, r.why = "UNCLEAR", f"warning lacks /{case.keyword}/"
        else:
            r.outcome = "SILENT"
            r.why = "exit 0" + (" with a warning only" if warnings_ else
                                " (stderr has output, but no `genrep:` line)" if r.lines else
                                " without an error or warning")
    elif r.rc == 1:
        r.outcome, r.why = "UNCLEAR", "exit status 1 (an uncaught exception's status)"
    else:
        usage = bool(r.lines) and r.lines[0].startswith("usage:") and r.rc == 2
        if usage:
            body = r.lines[1:-1]
            last = r.lines[-1]
            if not ARGPARSE_ERROR.match(last) or any(not line.startswith((" ", "\t")) for line in body):
                r.outcome, r.why = "UNCLEAR", "usage text without a final `genrep ...: error:` line"
            elif not keyword.search(last):
                r.outcome, r.why = "UNCLEAR", f"message lacks /{case.keyword}/"
            else:
                r.outcome = "CLEAR"
        elif len(r.lines) == 1 and errors:
            if keyword.search(errors[0]):
                r.outcome = "CLEAR"
            else:
                r.outcome, r.why = "UNCLEAR", f"message lacks /{case.keyword}/"
        elif not r.lines:
            r.outcome, r.why = "UNCLEAR", f"exit {r.rc} with empty stderr"
        elif not errors:
            r.outcome, r.why = "UNCLEAR", "no `genrep: error:` line"
        else:
            r.outcome, r.why = "UNCLEAR", f"{len(r.lines)} stderr lines, not one"


# ----------------------------------------------------------------------------------------- report
def cell(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|").replace("`", "'")


def first_line(r: Result) -> str:
    """The line that says what went wrong: the argparse error, the genrep error, or the exception."""
    if r.outcome == "TRACEBACK":
        lines = [line for line in r.lines if line and not line.startswith((" ", "Traceback", "During handling",
                                                                          "The above exception"))]
        return lines[-1] if lines else ""
    for line in r.lines:
        if line.startswith("genrep: error:") or ARGPARSE_ERROR.match(line):
            return line
    return r.lines[0] if r.lines else ""


def shown(argv: list[str], T: Path) -> str:
    return "genrep " + " ".join(shlex.quote(a) for a in argv).replace(str(T), "$T")


def report(results: list[Result], T: Path) -> str:
    out = ["| id | command | outcome | stderr (first line) |", "|---|---|---|---|"]
    for r in results:
        out.append(f"| {r.case.id} | `{cell(shown(r.argv, T), 160)}` | {r.outcome} | "
                   f"{cell(first_line(r).replace(str(T), '$T'))} |")
    bad = [r for r in results if r.outcome not in ("CLEAR", "EXPECTED_OK")]
    if bad:
        out += ["", f"## Not clear ({len(bad)})", ""]
        for r in bad:
            out.append(f"### {r.case.id}: {r.outcome} ({r.why})")
            out.append(f"command: `{shown(r.argv, T)}`  (exit {r.rc}, {r.seconds:.1f} s; keyword /{r.case.keyword}/, "
                       f"expect {r.case.expect})")
            if r.case.note:
                out.append(f"note: {r.case.note}")
            if r.origin:
                out.append(f"origin: {r.origin}")
            text = r.stderr.replace(str(T), "$T").rstrip()
            lines = text.splitlines()
            if len(lines) > 40:
                lines = lines[:5] + [f"... ({len(lines) - 35} lines left out) ..."] + lines[-30:]
            out += ["```", *(lines or ["(empty stderr)"]), "```"]
            if r.outcome == "SILENT" and r.stdout.strip():
                out.append("stdout tail: `" + cell(r.stdout.replace(str(T), "$T").strip().splitlines()[-1], 200) + "`")
            out.append("")
    counts = {k: sum(r.outcome == k for r in results) for k in ("CLEAR", "EXPECTED_OK", "TRACEBACK", "SILENT",
                                                                "UNCLEAR", "UNSAFE")}
    summary = (f"red team: {len(results)} cases, {counts['CLEAR']} clear, {counts['TRACEBACK']} tracebacks, "
               f"{counts['SILENT']} silent, {counts['UNCLEAR']} unclear")
    extra = [f"{counts['EXPECTED_OK']} expected-ok"] + ([f"{counts['UNSAFE']} UNSAFE"] if counts["UNSAFE"] else [])
    out += ["", summary + " (" + ", ".join(extra) + ")"]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", metavar="DIR", help="build the fixtures in DIR (new or empty) and keep them")
    parser.add_argument("--only", metavar="PATTERN", help="run only the cases whose id matches this regex")
    parser.add_argument("--exec", dest="exec_", action="store_true",
                        help="run the real console script per case instead of forking a pre-imported process")
    parser.add_argument("--jobs", type=int, default=2, help="cases at a time (default 2)")
    parser.add_argument("--timeout", type=float, default=150, help="seconds per case (default 150)")
    parser.add_argument("--json", metavar="FILE", help="also write every result (full stdout/stderr) as JSON")
    parser.add_argument("--list", action="store_true", help="list the case ids and exit")
    args = parser.parse_args(argv)

    ids = [c.id for c in CASES]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        sys.exit(f"red team: duplicate case ids {duplicates}")
    cases = [c for c in CASES if not args.only or re.search(args.only, c.id)]
    if args.list:
        print("\n".join(c.id for c in cases))
        return 0
    if not cases:
        sys.exit(f"red team: no case id matches {args.only!r}")
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # before torch is imported
    os.environ.setdefault("GENREP_DATA_REAL", os.environ.get("GENREP_DATA", "~/.cache/genrep"))
    if args.keep:
        T = Path(args.keep).resolve()
        if T.exists() and any(T.iterdir()):
            sys.exit(f"red team: --keep {T} exists and is not empty")
        T.mkdir(parents=True, exist_ok=True)
    else:
        T = Path(tempfile.mkdtemp(prefix="genrep-red-team-"))
    started = time.perf_counter()
    try:
        fixture_runner = exec_runner(T, args.jobs, args.timeout)  # the fixtures always use the real script
        (T / "cwd").mkdir(parents=True, exist_ok=True)
        build_fixtures(T, fixture_runner)
        runner = exec_runner(T, args.jobs, args.timeout) if args.exec_ else fork_runner(T, args.jobs, args.timeout)
        results: list[Result] = []
        marker = T / MARKER
        # cases that load unsafe pickles run one at a time so a payload that runs is pinned on its case
        unsafe = [c for c in cases if re.search(r"evil", c.argv + c.id) or "r_evil" in c.argv]
        safe = [c for c in cases if c not in unsafe]
        expanded = {c.id: expand(c.argv, T, T / "out" / c.id) for c in cases}
        raw = runner([(c.id, expanded[c.id]) for c in safe])
        executed = {c.id: False for c in cases}
        if marker.exists():  # ran in a case not marked unsafe: blame all of them rather than none
            marker.unlink()
            print("red team: the unsafe payload ran during the ordinary cases", file=sys.stderr)
        for c in unsafe:
            raw.update(runner([(c.id, expanded[c.id])]))
            if marker.exists():
                executed[c.id] = True
                marker.unlink()
        for c in cases:
            res = raw[c.id]
            r = Result(c, expanded[c.id], res["rc"], res["stdout"], res["stderr"], res["seconds"],
                       executed=executed[c.id])
            classify(r, res["timed_out"])
            results.append(r)
        text = report(results, T)
        print(text)
        print(f"(fixtures {T}{'' if args.keep else ', removed'}; {time.perf_counter() - started:.0f} s in all)",
              file=sys.stderr)
        if args.json:
            Path(args.json).write_text(json.dumps([
                {"id": r.case.id, "command": shown(r.argv, T), "outcome": r.outcome, "why": r.why, "rc": r.rc,
                 "origin": r.origin, "keyword": r.case.keyword, "expect": r.case.expect, "seconds": r.seconds,
                 "stderr": r.stderr.replace(str(T), "$T"), "stdout": r.stdout.replace(str(T), "$T")}
                for r in results], indent=1))
        return 0 if all(r.outcome in ("CLEAR", "EXPECTED_OK") for r in results) else 1
    finally:
        if not args.keep:
            shutil.rmtree(T, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
