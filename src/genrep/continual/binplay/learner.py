"""BinPlay (thesis ch.8, Fig. 8.3.2): a binary latent autoencoder stores past training samples as the
decoder's images of index codes c(i) (Eq. 8.1); a base classifier rehearses them.

For task t with n new samples (allocated the chronological indices `Task.global_index`):
1. Autoencoder (§8.3.4): encoder + a copy of the current decoder, `ae_epochs` epochs (Adam `ae_lr`,
   batch `ae_batch_size`) of  ‖σ(dec(z)) − x‖² / B + w·Σ_i ‖z_i − c_a(i)‖²  (the assignment term of
   Alg. 2, w = `assignment_weight`, summed over the batch as in the reference) from epoch
   `warmup_epochs` on; a(i) is the greedy nearest unassigned code of the task, one pass per epoch over
   the shuffled samples.
2. Mapping freeze: one deterministic pass (eval mode, data order) of Alg. 2 fixes sample → code; the share
   of bits of sign(z) that equal the frozen code is recorded per task (`diagnostics()`, results.json).
3. Decoder (§8.3.1, Shin et al. 2017): task 0 keeps training the autoencoder's decoder on ⟨c(i), x_i⟩
   (Adam `first_decoder_lr`); task t > 0 trains a fresh decoder (Adam `decoder_lr`) on batches whose
   entries come from every task seen so far with equal probability: ⟨c(i), x_i⟩ for the new task and
   ⟨c(i), σ(dec_frozen(c(i)))⟩ for a uniformly drawn old index i (`decoder_new_fraction` f: the new
   task's share of the entries instead, old tasks equally sharing 1 − f). `decoder_epochs` epochs of n / B
   steps, learning rate × `decoder_lr_decay` per epoch; loss ‖σ(dec(c)) − target‖² / B. The task-t
   decoder starts as `decoder_init` says: "fresh" (the reference), "previous" (a copy of the frozen
   decoder: old tasks start remembered) or "autoencoder" (step 1's trained copy: the new task starts
   remembered too) — the warm starts are ours, for budgets far below the reference's 200 epochs.
4. Base classifier (§8.3.4, Table 8.3.1): trained on one shuffled set of the new samples — passed
   through the autoencoder, i.e. σ(dec(c_a(i))), when `process_new_through_ae` — with their labels,
   plus `replay_per_task` (default n) regenerated samples of every past task, plain mean loss over
   each batch (so an epoch takes (t + 1)·n / B steps, like the reference's t + 1 steps per batch of
   new data); past targets are the softmax of a frozen copy of the classifier (`soft_targets`, Hinton
   et al. 2015) or, for the ablation's reference configuration, the labels the samples had when they
   were encoded (then stored per index).

Only the decoder and the per-task index ranges are kept for replay (`memory_bytes`, Table 8.4.2's
convention for every method: what the method keeps to replay, not the base classifier); the encoder
is kept too, as the next task's initialisation (as in the reference), but not counted. The base
classifier is `classifier` ("lenet5" by default; "lenetg", the reference's LeNetG, at `paper` scale).
Reference code facts used here: `vae_experiments/training_functions.py` and `main.py` of the BinPlay
authors (20 autoencoder epochs, assignment weight 10 after 3 warm-up epochs, 200 decoder epochs with
lr 5e-3 on task 0 and 1e-3 afterwards, ExponentialLR 0.99, task-balanced decoder replay, batch 50).
Deviations: the reference shuffles each new batch of B with B freshly regenerated samples per past task
and takes t + 1 Adam steps on chunks of B; here the past samples are regenerated once per task (a pool
of n per past task) and shuffled with the new ones — the same mixture and step count. The reference labels the
past samples consistently only in its "generated" mode (new samples regenerated from their codes, i.e.
`process_new_through_ae`); in its other modes an indexing slip gives the last past task's samples the
current batch's labels; here every past sample gets the frozen classifier's softmax. The autoencoder's
decoder sees sign(z) (straight-through) rather than z unless `straight_through=False`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from genrep.continual.binplay.assignment import bit_agreement, greedy_assign
from genrep.continual.binplay.autoencoder import BinaryAutoencoder, BinaryDecoder, BinaryEncoder
from genrep.continual.classifier import (
    CLASSIFIERS, LEGACY_CLASSIFIER, LOSSES, build_classifier, check_classifier_name, fit_classifier, predict_logits,
)
from genrep.continual.codes import MIN_SUBVECTOR_BITS, binary_codes
from genrep.continual.learner import (
    DEVICE, POSITIVE, ContinualLearner, Range, Rule, SettingError, at_least, check_settings, module_bytes,
)
from genrep.continual.scenario import Scenario, Task
from genrep.continual.seeding import seeded, shuffled_batches, stream_seed
from genrep.errors import CheckpointError, ConfigError, DataError, InputError, TrainingDivergedError

_INIT, _TASK, _DECODER, _SAMPLE = 0, 1_000, 2_000, 3_000  # random stream offsets (plus the task index)
DECODER_INITS = ("fresh", "previous", "autoencoder")  # where task t > 0 starts its decoder (step 3)
_STATE_KEYS = ("encoder", "decoder", "classifier", "runs", "labels", "sample_generator")  # required on load


@dataclasses.dataclass
class BinPlaySettings:
    """Defaults are the paper / reference values for MNIST-sized data (CIFAR-10: n_bits=1000), except
    `classifier`: "lenet5" (ours) by default, "lenetg" (the reference's LeNetG) as the `paper` scale sets it
    for every method (`genrep.continual.classifier.CLASSIFIERS`). Every field is checked against its type
    and its `RULES` entry (`check_settings`), and warmup_epochs <= ae_epochs: SettingError. Epoch counts may
    be 0 (that phase is skipped, e.g. to probe an untrained network)."""

    n_bits: int = 200
    task_bits: int = 10
    width: int = 32
    straight_through: bool = True
    ae_epochs: int = 20
    warmup_epochs: int = 3
    assignment_weight: float = 10.0
    ae_lr: float = 1e-3
    ae_batch_size: int = 50
    decoder_epochs: int = 200
    first_decoder_lr: float = 5e-3
    decoder_lr: float = 1e-3
    decoder_lr_decay: float = 0.99
    decoder_batch_size: int = 50
    decoder_init: str = "fresh"
    decoder_new_fraction: float | None = None
    classifier: str = "lenet5"
    classifier_width: int = 1
    classifier_epochs: int = 15
    classifier_lr: float = 2e-3
    classifier_batch_size: int = 120
    classifier_loss: str = "mse-softmax"
    process_new_through_ae: bool = True
    soft_targets: bool = True
    replay_per_task: int | None = None
    seed: int = 0
    device: str = "cpu"
    progress: bool = False

    RULES: ClassVar[dict[str, Rule]] = {
        "n_bits": at_least(MIN_SUBVECTOR_BITS), "task_bits": Range(1, 62), "width": at_least(1),
        "ae_epochs": at_least(0), "warmup_epochs": at_least(0), "assignment_weight": at_least(0), "ae_lr": POSITIVE,
        "ae_batch_size": at_least(2), "decoder_epochs": at_least(0), "first_decoder_lr": POSITIVE,
        "decoder_lr": POSITIVE, "decoder_lr_decay": Range(0, 1, low_open=True), "decoder_batch_size": at_least(2),
        "decoder_init": DECODER_INITS, "decoder_new_fraction": Range(0, 1, low_open=True),
        "classifier": tuple(CLASSIFIERS), "classifier_width": at_least(1), "classifier_epochs": at_least(0), "classifier_lr": POSITIVE,
        "classifier_batch_size": at_least(2), "classifier_loss": LOSSES, "replay_per_task": at_least(1),
        "seed": at_least(0), "device": DEVICE}

    def __post_init__(self) -> None:
        check_settings(self)
        if self.warmup_epochs > self.ae_epochs:
            raise SettingError(type(self).__name__, "warmup_epochs", self.warmup_epochs,
                               f"an integer <= ae_epochs ({self.ae_epochs})")


def index_runs(indices: torch.Tensor) -> torch.Tensor:
    """Sorted distinct int64 indices → their maximal runs of consecutive values, int64 R×2 [start, stop)."""
    if len(indices) == 0:
        return torch.empty(0, 2, dtype=torch.int64)
    breaks = (indices[1:] != indices[:-1] + 1).nonzero().flatten() + 1
    starts = torch.cat([indices[:1], indices[breaks]])
    stops = torch.cat([indices[breaks - 1] + 1, indices[-1:] + 1])
    return torch.stack([starts, stops], 1)


def run_positions(runs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The index at each position (0 … total−1) of the concatenated runs (R×2 [start, stop))."""
    ends = (runs[:, 1] - runs[:, 0]).cumsum(0)
    which = torch.searchsorted(ends, positions, right=True)
    return runs[which, 0] + positions - (ends[which] - (runs[which, 1] - runs[which, 0]))


def replay_owners(t: int, shape: tuple[int, ...], new_fraction: float | None, generator: torch.Generator):
    """The task (0 … t) of every entry of the task-t decoder's batches: t with probability `new_fraction`,
    else uniform over the old tasks 0 … t−1; uniform over 0 … t (the reference) for None."""
    if new_fraction is None:
        return torch.randint(t + 1, shape, generator=generator)
    is_new = torch.rand(shape, generator=generator) < new_fraction
    return torch.where(is_new, t, torch.randint(t, shape, generator=generator))


class BinPlay(ContinualLearner):
    """BinPlay on the `ContinualLearner` contract (see the module docstring). `predict` gives the base
    classifier's logits; `sample(n, task)` regenerates stored samples of a task (of all tasks for None)."""

    kind = "classifier"

    def __init__(self, settings: BinPlaySettings | None = None, **overrides: Any):
        names = {field.name for field in dataclasses.fields(BinPlaySettings)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"BinPlay: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        if settings is not None and not isinstance(settings, BinPlaySettings):
            raise ConfigError(f"BinPlay needs BinPlaySettings, got {type(settings).__name__}")
        self.settings = dataclasses.replace(settings or BinPlaySettings(), **overrides)
        self.scenario: Scenario | None = None
        self.runs: list[torch.Tensor] = []  # per learned task: its allocated indices as R×2 runs
        self.labels: list[torch.Tensor] = []  # per learned task, only without soft targets: label per index
        self.assigned_index: torch.Tensor | None = None  # last task: global index of every training row's code
        self.assignment_agreement: list[float] = []  # per learned task: bit_agreement after the mapping freeze

    # -- set-up, state -------------------------------------------------------------------------------
    def setup(self, scenario: Scenario) -> None:
        if scenario.num_classes is None:
            raise DataError(f"BinPlay needs a labelled scenario; {scenario.name!r} has no classes")
        s = self.settings
        self.scenario = scenario
        with seeded(stream_seed(s.seed, _INIT)):
            self.encoder = BinaryEncoder(scenario.image_shape, s.n_bits, width=s.width).to(s.device)
            self.decoder = self._new_decoder()
            self.classifier = build_classifier(s.classifier, scenario.image_shape, scenario.num_classes,
                                               width=s.classifier_width).to(s.device)
        self.runs, self.labels, self.assigned_index, self.assignment_agreement = [], [], None, []
        self.sample_generator = torch.Generator().manual_seed(stream_seed(s.seed, _SAMPLE))

    def _new_decoder(self) -> BinaryDecoder:
        s = self.settings
        return BinaryDecoder(self.scenario.image_shape, s.n_bits, width=s.width, task_bits=s.task_bits).to(s.device)

    def _check(self) -> None:
        if self.scenario is None:
            raise ConfigError("BinPlay: call setup(scenario) before training, predicting or sampling")

    def state_dict(self) -> dict[str, Any]:
        self._check()
        networks = {name: copy.deepcopy(getattr(self, name).state_dict()) for name in _STATE_KEYS[:3]}
        return {**networks, "classifier_arch": self.settings.classifier,
                "runs": [r.clone() for r in self.runs], "labels": [y.clone() for y in self.labels],
                "sample_generator": self.sample_generator.get_state(),
                "assignment_agreement": list(self.assignment_agreement)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check()
        missing = [key for key in _STATE_KEYS if key not in state]
        if missing:
            raise CheckpointError(f"BinPlay state lacks {', '.join(missing)}; was it saved by another learner?")
        check_classifier_name("BinPlay", state.get("classifier_arch", LEGACY_CLASSIFIER), self.settings.classifier)
        try:
            for name in _STATE_KEYS[:3]:
                getattr(self, name).load_state_dict(state[name])
        except RuntimeError as error:
            raise CheckpointError(f"BinPlay state does not match the networks of these settings "
                                  f"({str(error).splitlines()[0]}); use the same n_bits, width and scenario") from None
        self.runs, self.labels = [r.clone() for r in state["runs"]], [y.clone() for y in state["labels"]]
        self.sample_generator.set_state(state["sample_generator"])
        self.assignment_agreement = list(state.get("assignment_agreement", []))  # absent before 2026-11-29
        self.assigned_index = None

    def diagnostics(self) -> dict[str, Any]:
        """Per learned task, how far the greedy assignment converged: the share of the bits of
        sign(encoder(x)) equal to the code each sample was frozen to. 1: the codes describe the images;
        near the value of embeddings unrelated to the images (≈ 0.6 for 12k samples and 200 bits, the greedy
        pass alone picks near codes), the decoder must memorise arbitrary code → image pairs (docs/continual.md)."""
        return {"assignment_bit_agreement": [round(a, 4) for a in self.assignment_agreement]}

    def memory_bytes(self) -> int:
        """What BinPlay keeps to replay: decoder parameters and buffers + 16 bytes per index run (+ the
        stored labels without soft targets); not the encoder or the classifier."""
        self._check()
        stored = sum(r.numel() * r.element_size() for r in self.runs + self.labels)
        return module_bytes(self.decoder) + stored

    def storage_mb(self) -> float:
        """`memory_bytes()` in MiB, the unit of Table 8.4.2 (its 4.6 MB is this decoder for MNIST)."""
        return self.memory_bytes() / 2**20

    # -- images ↔ [0, 1] ------------------------------------------------------------------------------
    def _to_unit(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.scenario.value_range
        return (x - low) / (high - low)

    def _from_unit(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.scenario.value_range
        return x * (high - low) + low

    @torch.no_grad()
    def _decode_unit(self, decoder: BinaryDecoder, indices: torch.Tensor, tasks, batch_size: int = 500):
        """σ(decoder(c(i), task)) in [0, 1] for int64 indices (N,), eval mode, on the settings' device."""
        was_training = decoder.training
        decoder.eval()
        tasks = torch.as_tensor(tasks).expand(len(indices))
        out = [torch.sigmoid(decoder(binary_codes(chunk, self.settings.n_bits).to(self.settings.device),
                                     task_chunk.to(self.settings.device)))
               for chunk, task_chunk in zip(indices.split(batch_size), tasks.split(batch_size))]
        decoder.train(was_training)
        return torch.cat(out) if out else torch.empty(0, *self.scenario.image_shape, device=self.settings.device)

    def decode(self, indices, task) -> torch.Tensor:
        """Regenerate the samples stored at global indices (N,) of `task` (an int or (N,) ints), in the
        scenario's value range, N×C×H×W on the settings' device."""
        self._check()
        return self._from_unit(self._decode_unit(self.decoder, torch.as_tensor(indices, dtype=torch.int64), task))

    def _draw(self, task: int, n: int, generator: torch.Generator) -> torch.Tensor:
        """n indices drawn uniformly (with replacement) from the allocated indices of learned `task`."""
        runs = self.runs[task]
        total = int((runs[:, 1] - runs[:, 0]).sum())
        return run_positions(runs, torch.randint(total, (n,), generator=generator))

    def sample(self, n: int, task: int | None = None) -> torch.Tensor:
        """n stored samples regenerated from uniformly drawn allocated indices of `task` (None: of all learned
        tasks, each index equally likely), in the scenario's value range."""
        self._check()
        if not self.runs or (task is not None and not 0 <= task < len(self.runs)):
            raise InputError(f"BinPlay.sample: task must be one of the {len(self.runs)} learned tasks or None, "
                             f"got {task!r}")
        if task is None:
            sizes = torch.tensor([float((r[:, 1] - r[:, 0]).sum()) for r in self.runs])
            owners = torch.multinomial(sizes, n, replacement=True, generator=self.sample_generator)
        else:
            owners = torch.full((n,), task, dtype=torch.int64)
        indices = torch.empty(n, dtype=torch.int64)
        for owner in owners.unique().tolist():
            rows = (owners == owner).nonzero().flatten()
            indices[rows] = self._draw(owner, len(rows), self.sample_generator)
        return self.decode(indices, owners)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        self._check()
        return predict_logits(self.classifier, x)

    # -- training -------------------------------------------------------------------------------------
    def learn(self, task: Task) -> None:
        self._check()
        if task.index != len(self.runs):
            raise InputError(f"BinPlay learns tasks in order: expected task {len(self.runs)}, got {task.index}")
        if task.train.labels is None or len(task.train) < 2:
            raise DataError(f"BinPlay: task {task.index} needs at least 2 labelled training samples")
        pool = self._allocate(task)
        seed = stream_seed(self.settings.seed, _TASK + task.index)
        with seeded(seed):
            generator = torch.Generator().manual_seed(seed)
            x = self._to_unit(task.train.images).to(self.settings.device)
            codes = binary_codes(pool, self.settings.n_bits).to(self.settings.device)
            assigned, ae_decoder, agreement = self._fit_autoencoder(x, codes, task.index, generator)
            self.decoder = self._fit_decoder(x, codes[assigned.to(codes.device)], task.index, generator, ae_decoder)
            self.assigned_index = pool[assigned]
            self._fit_classifier(task, self.assigned_index, generator)
        self.runs.append(index_runs(pool))
        self.assignment_agreement.append(agreement)
        if not self.settings.soft_targets:
            self.labels.append(task.train.labels[assigned.argsort()].to(torch.int16))

    def _allocate(self, task: Task) -> torch.Tensor:
        """The task's indices, sorted (chronological `global_index`, else the next free ones)."""
        n = len(task.train)
        last = int(self.runs[-1][-1, 1]) if self.runs else 0
        if task.global_index is None:
            return torch.arange(last, last + n)
        pool = task.global_index.to(torch.int64).sort().values
        if (len(pool) > 1 and bool((pool[1:] == pool[:-1]).any())) or int(pool[0]) < last:
            raise DataError(f"BinPlay: task {task.index} global_index must hold distinct indices >= {last} (after "
                            f"those of earlier tasks), got [{int(pool[0])}, {int(pool[-1])}] with repeats or overlap")
        return pool

    def _fit_autoencoder(self, x: torch.Tensor, codes: torch.Tensor, t: int, generator: torch.Generator):
        """Steps 1–2 of the module docstring; returns the frozen code position (into `codes`, CPU) per sample,
        the autoencoder's decoder (the current decoder itself for task 0, a trained copy afterwards) and the
        `bit_agreement` of the embeddings with their frozen codes."""
        s = self.settings
        decoder = self.decoder if t == 0 else copy.deepcopy(self.decoder)
        autoencoder = BinaryAutoencoder(self.encoder, decoder, straight_through=s.straight_through).train()
        optimizer = torch.optim.Adam(autoencoder.parameters(), lr=s.ae_lr)
        bar = tqdm(range(s.ae_epochs), desc=f"task {t} autoencoder", unit="epoch", disable=not s.progress, leave=False)
        for epoch in bar:
            available = torch.ones(len(codes), dtype=torch.bool)
            for rows in shuffled_batches(len(x), s.ae_batch_size, generator):
                z, logits = autoencoder(x[rows], t)
                loss = F.mse_loss(torch.sigmoid(logits), x[rows], reduction="sum") / len(rows)
                if epoch >= s.warmup_epochs:  # Alg. 2 on this batch, continuing the epoch's greedy pass
                    chosen = greedy_assign(z.detach(), codes, available=available)
                    loss = loss + s.assignment_weight * (z - codes[chosen.to(codes.device)]).pow(2).sum()
                self._step(optimizer, loss, "autoencoder", epoch)
            bar.set_postfix(loss=f"{loss.item():.3g}")
        autoencoder.eval()
        with torch.no_grad():
            z = torch.cat([self.encoder(chunk) for chunk in x.split(500)])
        self.encoder.train()
        assigned = greedy_assign(z, codes)  # the deterministic pass (data order) freezes the mapping
        return assigned, decoder, bit_agreement(z, codes[assigned.to(codes.device)])

    def _fit_decoder(self, x: torch.Tensor, codes: torch.Tensor, t: int, generator: torch.Generator,
                     ae_decoder: BinaryDecoder) -> BinaryDecoder:
        """Step 3: decoder on ⟨c, x⟩ of the new task plus (t > 0) replay of its frozen copy, each batch entry's
        task drawn by `replay_owners`; for t > 0 it starts as `decoder_init` says: fresh (reference), the
        previous decoder, or `ae_decoder`."""
        s = self.settings
        if t == 0:
            decoder, lr = self.decoder, s.first_decoder_lr
        else:
            frozen, lr = self.decoder.eval(), s.decoder_lr
            if s.decoder_init == "fresh":
                with seeded(stream_seed(s.seed, _DECODER + t)):
                    decoder = self._new_decoder()
            else:
                decoder = copy.deepcopy(frozen) if s.decoder_init == "previous" else ae_decoder
        decoder.train()
        optimizer = torch.optim.Adam(decoder.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=s.decoder_lr_decay)
        steps, batch = math.ceil(len(x) / s.decoder_batch_size), s.decoder_batch_size
        new_rows = torch.empty(0, dtype=torch.int64)
        bar = tqdm(range(s.decoder_epochs), desc=f"task {t} decoder", unit="epoch", disable=not s.progress, leave=False)
        for epoch in bar:
            if t == 0:
                plan = [(rows, torch.empty(0, dtype=torch.int64)) for rows in shuffled_batches(len(x), batch, generator)]
            else:  # the new task's entries walk through permutations of its samples
                owners = replay_owners(t, (steps, batch), s.decoder_new_fraction, generator)
                need = int((owners == t).sum())
                while len(new_rows) < need:
                    new_rows = torch.cat([new_rows, torch.randperm(len(x), generator=generator)])
                taken, new_rows = new_rows[:need], new_rows[need:]
                counts = (owners == t).sum(1).tolist()
                plan = list(zip(taken.split(counts), [o[o < t] for o in owners]))
            for rows, old_tasks in plan:
                in_codes, in_tasks, targets = codes[rows], torch.full((len(rows),), t), x[rows]
                if len(old_tasks):
                    old_index = torch.cat([self._draw(k, int((old_tasks == k).sum()), generator) for k in range(t)])
                    old_tasks = old_tasks.sort().values
                    old_codes = binary_codes(old_index, s.n_bits).to(s.device)
                    with torch.no_grad():
                        old_targets = torch.sigmoid(frozen(old_codes, old_tasks.to(s.device)))
                    in_codes, targets = torch.cat([in_codes, old_codes]), torch.cat([targets, old_targets])
                    in_tasks = torch.cat([in_tasks, old_tasks])
                if len(in_codes) < 2:
                    continue
                logits = decoder(in_codes, in_tasks.to(s.device))
                loss = F.mse_loss(torch.sigmoid(logits), targets, reduction="sum") / len(in_codes)
                self._step(optimizer, loss, "decoder", epoch)
            schedule.step()
            bar.set_postfix(loss=f"{loss.item():.3g}")
        return decoder.eval()

    def _fit_classifier(self, task: Task, new_index: torch.Tensor, generator: torch.Generator) -> None:
        """Step 4 of the module docstring: one shuffled training set of the new samples (one-hot labels)
        and `replay_per_task` (default n) regenerated samples of every past task with their targets."""
        s, t = self.settings, task.index
        if s.process_new_through_ae:
            images = self._from_unit(self._decode_unit(self.decoder, new_index, t))
        else:
            images = task.train.images.to(s.device)
        targets = F.one_hot(task.train.labels.to(s.device), self.classifier.num_classes).float()
        if t > 0:
            past_images, past_targets = self._regenerate_past(t, s.replay_per_task or len(images), generator)
            images, targets = torch.cat([images, past_images]), torch.cat([targets, past_targets])
        fit_classifier(self.classifier, images, targets, epochs=s.classifier_epochs,
                       batch_size=s.classifier_batch_size, lr=s.classifier_lr, loss=s.classifier_loss,
                       generator=generator, progress=s.progress)

    def _regenerate_past(self, t: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """`size` regenerated samples of each past task (uniformly drawn stored indices) and their targets:
        the softmax of a frozen copy of the classifier, or the stored labels one-hot (N·t×K)."""
        frozen = copy.deepcopy(self.classifier)
        images, targets = [], []
        for k in range(t):
            index = self._draw(k, size, generator)
            past = self._from_unit(self._decode_unit(self.decoder, index, k))
            if self.settings.soft_targets:
                targets.append(predict_logits(frozen, past).softmax(1))
            else:
                labels = self._stored_labels(k, index).to(past.device)
                targets.append(F.one_hot(labels, self.classifier.num_classes).float())
            images.append(past)
        return torch.cat(images), torch.cat(targets)

    def _stored_labels(self, task: int, index: torch.Tensor) -> torch.Tensor:
        """Labels (int64) stored for global indices of learned `task` (soft_targets=False only)."""
        runs = self.runs[task]
        lengths = runs[:, 1] - runs[:, 0]
        which = torch.searchsorted(runs[:, 1], index, right=True)
        positions = lengths.cumsum(0)[which] - lengths[which] + index - runs[which, 0]
        return self.labels[task][positions].long()

    @staticmethod
    def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, what: str, epoch: int) -> None:
        if not math.isfinite(loss.item()):
            raise TrainingDivergedError(f"BinPlay {what}: loss became {loss.item()} in epoch {epoch}; lower its lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
