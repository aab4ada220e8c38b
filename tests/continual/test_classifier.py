import pytest
import torch

from genrep.continual.classifier import BaseClassifier, fit_classifier, predict_logits
from genrep.errors import InputError


def quadrant_problem(n=240, seed=0):
    """4 classes of 1×8×8 images: class k has a bright 4×4 quadrant k, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    images = 0.3 * torch.rand(n, 1, 8, 8, generator=g)
    for k, (r, c) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):
        images[labels == k, :, r:r + 4, c:c + 4] += 0.6
    return images.clamp(0, 1), labels


def accuracy(model, images, labels):
    return (predict_logits(model, images).argmax(1) == labels).float().mean().item()


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 30, 26)])
def test_base_classifier_shapes(shape):
    model = BaseClassifier(shape, 10, width=2)
    assert model(torch.rand(5, *shape)).shape == (5, 10)
    assert predict_logits(model, torch.rand(3, *shape), batch_size=2).shape == (3, 10)
    with pytest.raises(InputError, match="expects images"):
        model(torch.rand(2, shape[0], shape[1] + 1, shape[2]))
    with pytest.raises(InputError, match="side >= 4"):
        BaseClassifier((1, 3, 3), 10)


@pytest.mark.parametrize("loss", ["mse-softmax", "ce"])
@pytest.mark.parametrize("soft", [False, True])
def test_fit_classifier_learns_separable_problem(loss, soft):
    images, labels = quadrant_problem()
    targets = 0.7 * torch.nn.functional.one_hot(labels, 4).float() + 0.075 if soft else labels
    torch.manual_seed(0)
    model = BaseClassifier((1, 8, 8), 4)
    history = fit_classifier(model, images, targets, epochs=6, batch_size=32, loss=loss,
                             generator=torch.Generator().manual_seed(0))
    assert len(history) == 6 and history[-1] < history[0]
    test_images, test_labels = quadrant_problem(seed=1)
    assert accuracy(model, test_images, test_labels) > 0.9  # chance: 0.25


def test_fit_classifier_is_seeded_and_weights_scale_the_loss():
    images, labels = quadrant_problem(n=64)

    def run(weights=None):
        torch.manual_seed(1)
        model = BaseClassifier((1, 8, 8), 4)
        losses = fit_classifier(model, images, labels, epochs=2, batch_size=16, weights=weights,
                                generator=torch.Generator().manual_seed(3))
        return model, losses

    (a, losses_a), (b, losses_b) = run(), run()
    assert losses_a == losses_b
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    frozen, losses = run(weights=torch.zeros(64))
    torch.manual_seed(1)
    initial = BaseClassifier((1, 8, 8), 4)
    assert losses == [0.0, 0.0]
    assert all(torch.equal(p, q) for p, q in zip(frozen.parameters(), initial.parameters()))


def test_fit_classifier_replay_teaches_classes_absent_from_the_new_data():
    images, labels = quadrant_problem()
    new, old = labels < 2, labels >= 2
    g = torch.Generator().manual_seed(0)

    def replay(n):
        rows = torch.randint(int(old.sum()), (n,), generator=g)
        return images[old][rows], labels[old][rows]

    torch.manual_seed(0)
    model = BaseClassifier((1, 8, 8), 4)
    fit_classifier(model, images[new], labels[new], epochs=6, batch_size=32, generator=g, replay=replay,
                   replay_ratio=0.5)
    test_images, test_labels = quadrant_problem(seed=1)
    assert accuracy(model, test_images, test_labels) > 0.9


def test_fit_classifier_rejects_bad_inputs():
    images, labels = quadrant_problem(n=16)
    model = BaseClassifier((1, 8, 8), 4)
    with pytest.raises(InputError, match="15 labels for 16 images"):
        fit_classifier(model, images, labels[:15], epochs=1)
    with pytest.raises(InputError, match="probabilities"):
        fit_classifier(model, images, torch.rand(16, 3), epochs=1)
    with pytest.raises(InputError, match=r"labels must lie in \[0, 4\)"):
        fit_classifier(model, images, labels + 1, epochs=1)
    with pytest.raises(InputError, match="loss must be one of"):
        fit_classifier(model, images, labels, loss="hinge")
    with pytest.raises(InputError, match="weights must have shape"):
        fit_classifier(model, images, labels, weights=torch.ones(3))
    with pytest.raises(InputError, match="replay_ratio"):
        fit_classifier(model, images, labels, replay_ratio=1.5)


def test_predict_logits_uses_eval_mode_and_restores_training_mode():
    model = BaseClassifier((1, 8, 8), 4)
    x = torch.rand(7, 1, 8, 8)
    model.train()
    first, second = predict_logits(model, x, batch_size=3), predict_logits(model, x)
    assert model.training and torch.allclose(first, second, atol=1e-6)  # no dropout, running statistics
    model.eval()
    assert torch.allclose(first, model(x), atol=1e-6) and not model.training
