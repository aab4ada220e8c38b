"""BinPlay: greedy code assignment (Alg. 2), the binary latent autoencoder and the learner on a tiny
hand-built 2-task split of the 8×8 digits."""

import time

import pytest
import torch

from genrep.continual.binplay import (BinaryAutoencoder, BinaryDecoder, BinaryEncoder, BinPlay, BinPlaySettings,
                                      binarize, bit_agreement, greedy_assign)
from genrep.continual.binplay.learner import index_runs, replay_owners, run_positions
from genrep.continual.codes import binary_codes
from genrep.continual.learner import module_bytes
from genrep.continual.scenario import Scenario, Task
from genrep.data import load_dataset
from genrep.errors import CheckpointError, ConfigError, DataError, InputError

TINY = dict(n_bits=32, width=4, ae_epochs=4, warmup_epochs=1, decoder_epochs=20, classifier_epochs=3)


def _sequential_greedy(z, codes, order):
    """Alg. 2 written out: each sample in order takes the nearest (L2²) code nobody took before it."""
    distance = torch.cdist(z.double(), codes.double()).pow(2)
    result, taken = torch.empty(len(z), dtype=torch.int64), torch.zeros(len(codes), dtype=torch.bool)
    for row in order.tolist():
        choice = int(distance[row].masked_fill(taken, float("inf")).argmin())
        result[row], taken[choice] = choice, True
    return result


# -- assignment (Alg. 2) -----------------------------------------------------------------------------------
def test_assignment_picks_nearest_codes_when_there_is_no_conflict():
    codes = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    z = torch.tensor([[-0.9, -1.2], [0.8, 1.1], [-1.0, 0.7]])
    assert greedy_assign(z, codes).tolist() == [3, 0, 2]


def test_assignment_conflict_goes_to_the_earlier_sample_in_order():
    codes = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    z = torch.tensor([[0.9, 0.9], [0.5, 0.4]])  # both nearest to code 0; sample 1 is closer to code 1 next
    assert greedy_assign(z, codes).tolist() == [0, 1]
    assert greedy_assign(z, codes, order=torch.tensor([1, 0])).tolist() == [1, 0]


@pytest.mark.parametrize("block", [1, 7, 256])
def test_assignment_is_a_permutation_equal_to_the_sequential_greedy(block):
    generator = torch.Generator().manual_seed(block)
    codes = binary_codes(torch.arange(300), 24)
    z = codes[torch.randperm(300, generator=generator)] * 0.3 + torch.randn(300, 24, generator=generator)
    order = torch.randperm(300, generator=generator)
    assigned = greedy_assign(z, codes, order=order, block=block)
    assert torch.equal(assigned.sort().values, torch.arange(300))  # one-to-one onto the task's codes
    assert torch.equal(assigned, _sequential_greedy(z, codes, order))
    collapsed = torch.randn(1, 24, generator=generator).expand(300, 24)  # all want the same codes: conflicts
    assert torch.equal(greedy_assign(collapsed, codes, order=order, block=block),
                       _sequential_greedy(collapsed, codes, order))


def test_assignment_continues_over_mini_batches_with_an_availability_mask():
    generator = torch.Generator().manual_seed(0)
    codes = binary_codes(torch.arange(100), 20)
    z = torch.randn(100, 20, generator=generator)
    available = torch.ones(100, dtype=torch.bool)
    pieces = [greedy_assign(z[rows], codes, available=available) for rows in torch.arange(100).split(30)]
    assert not available.any()
    assert torch.equal(torch.cat(pieces), greedy_assign(z, codes))
    with pytest.raises(InputError):
        greedy_assign(z[:1], codes, available=available)


def test_bit_agreement_counts_matching_signs_with_zero_as_plus_one():
    z = torch.tensor([[0.3, -2.0], [-0.1, 0.0]])
    codes = torch.tensor([[1.0, -1.0], [1.0, 1.0]])
    assert bit_agreement(z, codes) == 0.75
    with pytest.raises(InputError, match="one shape"):
        bit_agreement(z, codes[:1])
    with pytest.raises(InputError, match="-1, \\+1"):
        bit_agreement(z, (codes + 1) / 2)


def test_assignment_speed_12k_samples_200_bits():
    generator = torch.Generator().manual_seed(0)
    codes = binary_codes(torch.arange(12_000))
    z = codes[torch.randperm(12_000, generator=generator)] + 1.5 * torch.randn(12_000, 200, generator=generator)
    start = time.perf_counter()
    assigned = greedy_assign(z, codes, order=torch.randperm(12_000, generator=generator))
    seconds = time.perf_counter() - start
    print(f"greedy assignment of 12,000 samples to 12,000 codes of 200 bits: {seconds:.2f} s")
    assert len(assigned.unique()) == 12_000 and seconds < 20


# -- autoencoder ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_autoencoder_shapes(shape):
    encoder, decoder = BinaryEncoder(shape, 40, width=2), BinaryDecoder(shape, 40, width=2)
    z, logits = BinaryAutoencoder(encoder, decoder)(torch.rand(3, *shape), 1)
    assert z.shape == (3, 40) and logits.shape == (3, *shape)
    assert decoder(binary_codes(torch.arange(3), 40), torch.tensor([0, 1, 4])).shape == (3, *shape)


def test_reference_decoder_size_matches_table_8_4_2():
    assert module_bytes(BinaryDecoder((1, 28, 28), 200, width=32)) / 2**20 == pytest.approx(4.6, abs=0.05)


def test_binarize_is_sign_with_straight_through_gradient():
    z = torch.tensor([-0.3, 0.0, 2.0], requires_grad=True)
    out = binarize(z)
    assert out.tolist() == [-1.0, 1.0, 1.0]
    (out * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert z.grad.tolist() == [1.0, 2.0, 3.0]


def test_autoencoder_rejects_unsupported_sides():
    with pytest.raises(InputError):
        BinaryDecoder((1, 16, 16))


# -- the learner ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scenario() -> Scenario:
    """Tasks {0, 1} and {2, 3} of the 8×8 digits; global_index counts training rows chronologically."""
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    tasks, offset = [], 0
    for index, classes in enumerate([(0, 1), (2, 3)]):
        rows = torch.isin(train.labels, torch.tensor(classes)).nonzero().flatten()
        test_rows = torch.isin(test.labels, torch.tensor(classes)).nonzero().flatten()
        task_train = train.subset(rows)
        tasks.append(Task(index, f"digits {classes}", task_train, test.subset(test_rows), classes=classes,
                          global_index=torch.arange(offset, offset + len(task_train))))
        offset += len(task_train)
    return Scenario("digits-2", tuple(tasks), train.image_shape, num_classes=10)


@pytest.fixture(scope="module")
def trained(scenario):
    """A learner after both tasks, plus its state and the task-0 sample → index mapping after task 0."""
    learner = BinPlay(**TINY)
    learner.setup(scenario)
    learner.learn(scenario[0])
    after_first = learner.state_dict(), learner.assigned_index.clone()
    learner.learn(scenario[1])
    return learner, after_first


def test_binplay_predicts_and_stores_only_decoder_and_index_ranges(scenario, trained):
    learner, _ = trained
    logits = learner.predict(scenario[1].test.images)
    assert logits.shape == (len(scenario[1].test), 10) and torch.isfinite(logits).all()
    n0, n1 = len(scenario[0].train), len(scenario[1].train)
    assert [r.tolist() for r in learner.runs] == [[[0, n0]], [[n0, n0 + n1]]]
    assert learner.memory_bytes() == module_bytes(learner.decoder) + 2 * 16
    assert learner.storage_mb() == learner.memory_bytes() / 2**20
    assert torch.equal(learner.assigned_index.sort().values, torch.arange(n0, n0 + n1))


def test_binplay_regenerates_old_samples_better_than_random_codes(scenario, trained):
    learner, (_, mapping) = trained
    x0 = scenario[0].train.images
    error = (learner.decode(mapping, 0) - x0).pow(2).mean()
    unused = torch.arange(40_000, 40_000 + len(x0))  # indices never allocated: codes the decoder never saw
    random_error = (learner.decode(unused, 0) - x0).pow(2).mean()
    shuffled = mapping[torch.randperm(len(x0), generator=torch.Generator().manual_seed(0))]
    shuffled_error = (learner.decode(shuffled, 0) - x0).pow(2).mean()
    print(f"task-0 regeneration MSE after task 1: {error:.4f}; random codes {random_error:.4f}; "
          f"shuffled pairing {shuffled_error:.4f}")
    assert error < 0.8 * random_error and error < 0.8 * shuffled_error
    samples = learner.sample(6, 0)
    assert samples.shape == (6, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    assert learner.sample(5).shape == (5, 1, 8, 8)
    with pytest.raises(InputError):
        learner.sample(3, 2)


def test_binplay_state_round_trip_and_resume(scenario, trained):
    learner, (state_after_first, _) = trained
    images = scenario[0].test.images
    copy = BinPlay(**TINY)
    copy.setup(scenario)
    copy.load_state_dict(learner.state_dict())
    assert torch.equal(copy.predict(images), learner.predict(images))
    state = learner.state_dict()
    assert torch.equal(copy.sample(8), learner.sample(8))
    learner.load_state_dict(state)
    resumed = BinPlay(**TINY)  # resume after task 0: learning task 1 again gives the same learner
    resumed.setup(scenario)
    resumed.load_state_dict(state_after_first)
    resumed.learn(scenario[1])
    assert torch.equal(resumed.predict(images), learner.predict(images))
    with pytest.raises(InputError):
        resumed.learn(scenario[0])


class _FixedEmbeddings(torch.nn.Module):
    """An 'encoder' that returns the next rows of a fixed N×n matrix on every call (data order)."""

    def __init__(self, z: torch.Tensor):
        super().__init__()
        self.z, self.offset = z, 0

    def forward(self, x):
        out = self.z[self.offset:self.offset + len(x)]
        self.offset += len(x)
        return out


@pytest.mark.parametrize("on_codes", [True, False])
def test_binplay_records_how_far_the_assignment_converged(scenario, trained, on_codes):
    """Embeddings on (scaled) codes of the task's own indices are frozen to exactly those codes: agreement 1;
    embeddings unrelated to the codes agree on the bits the greedy choice of near codes gives. Both end up in
    `diagnostics()`."""
    learner, _ = trained
    agreement = learner.diagnostics()["assignment_bit_agreement"]
    assert len(agreement) == 2 and all(0.5 < a <= 1 for a in agreement)
    task, generator = scenario[0], torch.Generator().manual_seed(3)
    order = torch.randperm(len(task.train), generator=generator)
    z = (0.5 * binary_codes(order, 32) if on_codes else torch.randn(len(task.train), 32, generator=generator))
    probe = BinPlay(**{**TINY, "ae_epochs": 0, "warmup_epochs": 0, "decoder_epochs": 0, "classifier_epochs": 0})
    probe.setup(scenario)
    probe.encoder = _FixedEmbeddings(z)
    probe.learn(task)
    [value] = probe.diagnostics()["assignment_bit_agreement"]
    if on_codes:
        assert value == 1.0 and torch.equal(probe.assigned_index, order)
    else:  # the greedy pass still picks near codes: what embeddings unrelated to their images reach
        codes = binary_codes(torch.arange(len(task.train)), 32)
        expected = bit_agreement(z, codes[greedy_assign(z, codes)])
        assert value == pytest.approx(expected, abs=1e-4) and 0.5 < value < 0.9
    assert BinPlay(**TINY).diagnostics() == {"assignment_bit_agreement": []}


def test_binplay_ablation_switches_run(scenario):
    settings = BinPlaySettings(**{**TINY, "decoder_epochs": 5, "classifier_epochs": 1})
    learner = BinPlay(settings, process_new_through_ae=False, soft_targets=False, straight_through=False)
    learner.setup(scenario)
    for task in scenario:
        learner.learn(task)
    assert [len(labels) for labels in learner.labels] == [len(task.train) for task in scenario]
    assert learner.memory_bytes() == module_bytes(learner.decoder) + 2 * 16 + 2 * sum(len(t.train) for t in scenario)
    assert torch.equal(learner._stored_labels(1, learner.assigned_index), scenario[1].train.labels)
    assert learner.predict(scenario[0].test.images).shape == (len(scenario[0].test), 10)


def test_decoder_init_chooses_where_the_task_1_decoder_starts(scenario):
    """With no decoder epochs the task-1 decoder is exactly its starting point: a new network (fresh), the
    task-0 decoder (previous) or the autoencoder's copy after training on task 1 (autoencoder), which alone
    already regenerates task 1 at its assigned codes."""
    errors = {}
    for init in ("fresh", "previous", "autoencoder"):
        learner = BinPlay(**{**TINY, "decoder_epochs": 0, "classifier_epochs": 0, "decoder_init": init})
        learner.setup(scenario)
        learner.learn(scenario[0])
        before = {k: v.clone() for k, v in learner.decoder.state_dict().items()}
        learner.learn(scenario[1])
        after = learner.decoder.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before) == (init == "previous")
        x1 = scenario[1].train.images
        errors[init] = float((learner.decode(learner.assigned_index, 1) - x1).pow(2).mean())
    assert errors["autoencoder"] < 0.5 * min(errors["fresh"], errors["previous"])
    with pytest.raises(ConfigError):
        BinPlay(decoder_init="random")


def test_replay_owners_share_the_batch_between_new_and_old_tasks():
    generator = torch.Generator().manual_seed(0)
    uniform = torch.bincount(replay_owners(3, (40_000,), None, generator), minlength=4) / 40_000
    assert torch.allclose(uniform, torch.full((4,), 0.25), atol=0.01)
    half = torch.bincount(replay_owners(3, (200, 200), 0.5, generator).flatten(), minlength=4) / 40_000
    assert torch.allclose(half, torch.tensor([1 / 6, 1 / 6, 1 / 6, 0.5]), atol=0.01)
    assert bool((replay_owners(2, (100,), 1.0, generator) == 2).all())
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="decoder_new_fraction"):
            BinPlaySettings(decoder_new_fraction=bad)


def test_index_runs_round_trip():
    indices = torch.tensor([3, 4, 5, 9, 10, 20])
    runs = index_runs(indices)
    assert runs.tolist() == [[3, 6], [9, 11], [20, 21]]
    assert torch.equal(run_positions(runs, torch.arange(6)), indices)


def test_settings_and_scenario_errors(scenario):
    with pytest.raises(ConfigError):
        BinPlay(warmup_epochs=30)
    with pytest.raises(ConfigError):
        BinPlay(unknown_setting=1)
    learner = BinPlay(**TINY)
    learner.setup(scenario)
    overlapping = Task(0, "bad", scenario[0].train, scenario[0].test,
                       global_index=torch.zeros(len(scenario[0].train), dtype=torch.int64))
    with pytest.raises(DataError):
        learner.learn(overlapping)


QUICK = {**TINY, "ae_epochs": 3, "warmup_epochs": 1, "decoder_epochs": 1, "classifier_epochs": 1}


def test_every_epoch_gives_each_sample_its_own_code(scenario, monkeypatch):
    """Alg. 2's greedy pass runs over the whole epoch: the batches of one epoch never share a code."""
    from genrep.continual.binplay import learner as module

    calls = []
    real = module.greedy_assign

    def spy(z, codes, **options):
        chosen = real(z, codes, **options)
        calls.append(chosen.clone())
        return chosen

    monkeypatch.setattr(module, "greedy_assign", spy)
    learner = BinPlay(**QUICK)
    learner.setup(scenario)
    learner.learn(scenario[0])
    n = len(scenario[0].train)
    batch_calls, freeze = calls[:-1], calls[-1]  # the last pass (all rows at once) freezes the mapping
    assert len(freeze) == n and len(freeze.unique()) == n
    epochs = QUICK["ae_epochs"] - QUICK["warmup_epochs"]
    per_epoch = len(batch_calls) // epochs
    assert per_epoch * epochs == len(batch_calls) and per_epoch > 1
    for epoch in range(epochs):
        chosen = torch.cat(batch_calls[epoch * per_epoch:(epoch + 1) * per_epoch])
        assert len(chosen) == n and len(chosen.unique()) == n, f"codes repeat within epoch {epoch}"


def test_the_assignment_pull_moves_the_encoder(scenario, monkeypatch):
    """w·Σ‖z − c‖² must reach the encoder: with w = 1000 its gradient dwarfs the reconstruction-only
    gradient of the warm-up epoch (a detached z would leave the two alike)."""
    from genrep.continual.binplay import learner as module

    learner = BinPlay(**{**QUICK, "ae_epochs": 2, "assignment_weight": 1000.0})
    norms: dict[int, list[float]] = {0: [], 1: []}
    real_step = module.BinPlay._step

    def spy(optimizer, loss, what, epoch):
        real_step(optimizer, loss, what, epoch)
        if what == "autoencoder":
            norms[epoch].append(float(sum(p.grad.pow(2).sum() for p in learner.encoder.parameters()).sqrt()))

    monkeypatch.setattr(module.BinPlay, "_step", staticmethod(spy))
    learner.setup(scenario)
    learner.learn(scenario[0])
    warmup, pulled = sum(norms[0]) / len(norms[0]), sum(norms[1]) / len(norms[1])
    assert pulled > 30 * warmup, (warmup, pulled)


def test_binplay_classifier_is_a_setting_recorded_in_the_state(scenario):
    from genrep.continual.classifier import BaseClassifier, LeNetG

    assert BinPlaySettings().classifier == "lenet5"
    memory = {}
    for name, width in (("lenet5", 1), ("lenet5", 2), ("lenetg", 1)):
        learner = BinPlay(**TINY, classifier=name, classifier_width=width)
        learner.setup(scenario)
        assert isinstance(learner.classifier, {"lenet5": BaseClassifier, "lenetg": LeNetG}[name])
        memory[name, width] = learner.memory_bytes()
        # what BinPlay keeps to replay: the decoder (no task learned yet, so no index runs), never the classifier
        assert memory[name, width] == module_bytes(learner.decoder)
    assert len(set(memory.values())) == 1
    state = learner.state_dict()  # lenetg
    assert state["classifier_arch"] == "lenetg"
    other = BinPlay(**TINY)
    other.setup(scenario)
    with pytest.raises(CheckpointError, match="'lenetg' classifier.*'lenet5'"):
        other.load_state_dict(state)
    legacy = other.state_dict()
    del legacy["classifier_arch"]  # saved before the setting existed: LeNet-5
    other.load_state_dict(legacy)
    with pytest.raises(ConfigError, match="classifier must be one of lenet5, lenetg, mlp; got 'vgg'"):
        BinPlay(classifier="vgg")
