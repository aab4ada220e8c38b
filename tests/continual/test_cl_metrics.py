"""cl_metrics against hand-computed 3×3 examples."""

import math

import numpy as np
import pytest

from genrep.continual import cl_metrics
from genrep.errors import InputError

# R[i, j]: accuracy on task j after learning tasks 0..i. R[0, 1] = 0.85 (task 1 before it was learned) is higher
# than R[1, 1] = 0.8: forgetting must ignore it (max over l >= j only).
R = np.array([[0.90, 0.85, 0.00],
              [0.60, 0.80, 0.20],
              [0.50, 0.70, 0.95]])
B = np.array([0.10, 0.05, 0.10])


def test_hand_computed_accuracy_example():
    assert cl_metrics.average_accuracy(R) == pytest.approx((0.5 + 0.7 + 0.95) / 3)
    assert cl_metrics.average_incremental_accuracy(R) == pytest.approx((0.9 + (0.6 + 0.8) / 2 + 2.15 / 3) / 3)
    # j=0: max(0.9, 0.6) - 0.5 = 0.4; j=1: max(0.8) - 0.7 = 0.1
    assert cl_metrics.forgetting(R) == pytest.approx(0.25)
    # ((0.5 - 0.9) + (0.7 - 0.8)) / 2
    assert cl_metrics.backward_transfer(R) == pytest.approx(-0.25)
    # ((R[0,1] - b[1]) + (R[1,2] - b[2])) / 2 = (0.8 + 0.1) / 2
    assert cl_metrics.forward_transfer(R, B) == pytest.approx(0.45)


def test_lower_is_better_flips_forgetting_and_transfers():
    fid = np.array([[10.0, 80.0, 90.0],
                    [20.0, 12.0, 85.0],
                    [30.0, 25.0, 15.0]])
    b = np.array([100.0, 100.0, 100.0])
    s = cl_metrics.summarize(fid, b, higher_is_better=False)
    assert s["average"] == pytest.approx(70 / 3)
    assert s["forgetting"] == pytest.approx(((30 - 10) + (25 - 12)) / 2)  # FID rose: positive forgetting
    assert s["backward_transfer"] == pytest.approx(-((30 - 10) + (25 - 12)) / 2)
    assert s["forward_transfer"] == pytest.approx(((100 - 80) + (100 - 85)) / 2)  # FID fell before learning: helped
    # the same numbers as the accuracy-like metric -FID with higher_is_better=True
    up = cl_metrics.summarize(-fid, -b)
    for key in ("forgetting", "backward_transfer", "forward_transfer"):
        assert up[key] == pytest.approx(s[key])


def test_summarize_keys_and_values():
    s = cl_metrics.summarize(R, B)
    assert set(s) == {"average", "average_incremental", "forgetting", "backward_transfer", "forward_transfer"}
    assert s["forgetting"] == pytest.approx(0.25)
    assert all(isinstance(v, float) for v in s.values())


def test_no_forgetting_when_nothing_changes():
    R_perfect = np.triu(np.ones((4, 4))).T  # 1 on every seen task, 0 on unseen
    assert cl_metrics.forgetting(R_perfect) == 0.0
    assert cl_metrics.backward_transfer(R_perfect) == 0.0
    assert cl_metrics.average_accuracy(R_perfect) == 1.0


def test_single_task():
    s = cl_metrics.summarize([[0.7]], [0.1])
    assert s["average"] == pytest.approx(0.7) and s["average_incremental"] == pytest.approx(0.7)
    assert all(math.isnan(s[k]) for k in ("forgetting", "backward_transfer", "forward_transfer"))


def test_bad_shapes():
    with pytest.raises(InputError, match="square"):
        cl_metrics.average_accuracy(np.zeros((2, 3)))
    with pytest.raises(InputError, match="initial row"):
        cl_metrics.forward_transfer(R, B[:2])
