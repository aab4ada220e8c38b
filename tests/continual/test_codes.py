"""BinPlay index codes (thesis Eq. 8.1, Lemma 1) and task codes."""

import math

import numpy as np
import pytest
import torch

from genrep.continual.codes import binary_codes, code_capacity, code_layout, consecutive_hamming, task_code
from genrep.errors import InputError


_POPCOUNT = np.array([bin(v).count("1") for v in range(256)], dtype=np.int64)


def _literal_thesis_codes(indices: np.ndarray, m: int = 8, primes=(3, 5, 7, 11, 13)) -> np.ndarray:
    """Eq. 8.1 taken literally with narrow subvectors (the reference uses 25 subvectors of m = 8 bits)."""
    parts = [(indices * p ** math.floor(m * math.log(2) / math.log(p))) % 2**m for p in primes]
    return np.stack(parts, 1)


def test_literal_formula_with_narrow_subvectors_repeats_after_2_to_the_m():
    words = _literal_thesis_codes(np.arange(6400, dtype=np.int64))
    assert np.array_equal(words[:256], words[256:512])  # c(i) = c(i + 256): a 12k-sample task would collide
    assert len(np.unique(words, axis=0)) == 256
    ours = binary_codes(torch.tensor([0, 256, 6400, 2**16]))
    assert len(torch.unique(ours, dim=0)) == 4


def test_codes_unique_for_a_million_indices_and_consecutive_codes_differ():
    n = 1_000_000
    packed = np.concatenate([np.packbits(binary_codes(torch.arange(start, min(start + 250_000, n))).numpy() > 0, 1)
                             for start in range(0, n, 250_000)])
    assert packed.shape == (n, 25)
    rows = np.pad(packed, ((0, 0), (0, 7))).view(np.uint64)  # 32 bytes = 4 words per code
    ordered = rows[np.lexsort(rows.T[::-1])]
    assert (ordered[1:] != ordered[:-1]).any(1).all()  # no two of the million codes are equal
    distances = _POPCOUNT[packed[1:] ^ packed[:-1]].sum(1)
    print(f"consecutive codes over {n:,} indices: min Hamming distance {distances.min()}, mean {distances.mean():.1f} "
          f"of 200 bits")
    assert distances.min() >= len(code_layout(200))  # every subvector's lowest bit flips (odd multiplier)
    assert consecutive_hamming(100_000) == (distances[:99_999].min(), pytest.approx(distances[:99_999].mean()))


def test_layout_and_capacity():
    layout = code_layout(200)
    assert [m for m, _, _ in layout] == [29, 29, 29, 29, 28, 28, 28]
    assert [p for _, p, _ in layout] == [3, 5, 7, 11, 13, 17, 19]
    for m, p, multiplier in layout:  # Lemma 1, point 1: 2^m / λ < λ^e < 2^m with e = ⌊m ln2 / lnλ⌋
        assert multiplier == p ** math.floor(m * math.log(2) / math.log(p))
        assert 2**m / p < multiplier < 2**m
    assert code_capacity(200) == 2**28 and code_capacity(1000) == 2**30
    assert code_capacity(16) == 2**16 and len(code_layout(16)) == 1


def test_values_shape_determinism_and_subvector_formula():
    indices = torch.tensor([0, 1, 2, 12345, 2**28 - 1])
    codes = binary_codes(indices)
    assert codes.shape == (5, 200) and codes.dtype == torch.float32
    assert set(codes.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(codes, binary_codes(indices.numpy()))
    assert torch.equal(codes[3], binary_codes(range(12345, 12346))[0])
    m, _, multiplier = code_layout(200)[0]
    word = (12345 * multiplier) % 2**m
    bits = [(word >> (m - 1 - j)) & 1 for j in range(m)]  # MSB first
    assert codes[3, :m].tolist() == [2.0 * b - 1 for b in bits]
    assert binary_codes(torch.empty(0, dtype=torch.int64)).shape == (0, 200)


@pytest.mark.parametrize("bad", [torch.tensor([-1]), torch.tensor([1.0, 2.0]), torch.tensor([2**28]),
                                 torch.tensor([[1, 2]]), torch.tensor([True])])
def test_bad_indices_raise(bad):
    with pytest.raises(InputError):
        binary_codes(bad)


@pytest.mark.parametrize("n_bits", [0, 8, 15, 16.0])
def test_too_few_bits_raise(n_bits):
    with pytest.raises(InputError):
        binary_codes(torch.arange(3), n_bits)


def test_task_code_is_bits_of_t_times_307_mod_1024():
    assert task_code(0).tolist() == [0.0] * 10
    assert task_code(1).tolist() == [float(b) for b in f"{307:010b}"]
    assert task_code(4).tolist() == [float(b) for b in f"{4 * 307 % 1024:010b}"]
    batch = task_code(torch.arange(5))
    assert batch.shape == (5, 10) and torch.equal(batch[4], task_code(4))
    assert len(torch.unique(batch, dim=0)) == 5
    with pytest.raises(InputError):
        task_code(-1)
