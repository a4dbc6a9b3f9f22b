"""Entries summed at a batch's columns (shop_recs.ml.columns), against the dense way."""

import pytest
import torch

from shop_recs.ml.columns import ColumnSums, DistinctColumnSums, unique_rows


def test_distinct_rows_are_torch_unique_s():
    gen = torch.Generator().manual_seed(0)
    for shape in [(0,), (1,), (50,), (7, 13)]:
        rows = torch.randint(0, 20, shape, generator=gen)
        ids, inv = unique_rows(rows, 20)
        want_ids, want_inv = torch.unique(rows, return_inverse=True)
        assert torch.equal(ids, want_ids) and torch.equal(inv, want_inv)
        assert inv.shape == rows.shape


def naive(cols, shared, owner, item, value):
    """Each place on its own, in float64."""
    B = cols.shape[0]
    every = torch.cat([cols, shared.unsqueeze(0).expand(B, -1)], 1)
    out = torch.zeros(every.shape, dtype=torch.float64)
    for b in range(B):
        for c in range(every.shape[1]):
            hit = (owner == b) & (item == every[b, c])
            out[b, c] = value[hit].double().sum()
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B,C,K,E", [(5, 7, 4, 60), (3, 0, 6, 20), (4, 5, 0, 30), (6, 9, 3, 0),
                                     (1, 1, 1, 1)])
def test_the_scoring_and_training_sums_agree_bit_for_bit(dtype, B, C, K, E):
    size = 12  # few rows: repeated columns, columns in both parts, entries off every column
    gen = torch.Generator().manual_seed(B * 100 + C * 10 + K)
    cols = torch.randint(0, size, (B, C), generator=gen)
    cols[0, :min(C, 2)] = 0  # padding columns (row 0)
    shared = torch.randperm(size, generator=gen)[:K]
    shared[K // 2:K // 2 + 1] = shared[:1]  # a shared column twice
    owner = torch.randint(0, B, (E,), generator=gen)
    item = torch.randint(0, size, (E,), generator=gen)
    value = (torch.randn(E, generator=gen) * 10 ** torch.randint(-3, 4, (E,), generator=gen)
             ).to(dtype)
    got = ColumnSums(cols, shared, size)(owner, item, value)
    assert got.shape == (B, C + K) and got.dtype == dtype
    assert torch.equal(got, DistinctColumnSums(cols, shared, size)(owner, item, value))
    assert torch.allclose(got.double(), naive(cols, shared, owner, item, value),
                          rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sums", [ColumnSums, DistinctColumnSums])
def test_a_small_case_by_hand_and_its_gradients(sums):
    cols, shared = torch.tensor([[1, 2], [2, 3]]), torch.tensor([3, 4])
    owner, item = torch.tensor([0, 0, 1, 1, 1]), torch.tensor([1, 3, 2, 2, 5])
    value = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], requires_grad=True)
    out = sums(cols, shared, 6)(owner, item, value)
    assert out.tolist() == [[1.0, 0.0, 2.0, 0.0], [7.0, 0.0, 0.0, 0.0]]
    out.sum().backward()
    # each entry counts once per place it lands on: item 5 is on no column of example 1
    assert value.grad.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]
