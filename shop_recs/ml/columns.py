"""Sparse entries summed at a batch's columns (``BundleModel.forward(columns=, shared=)``).

The prior, the repeat bonus and the context mask of the network arrive as entries
``(example, item, value)``; a scoring batch asks for each example's own columns (its
candidates, ``[B, C]``) and for columns shared by every example (the moment sample or the
sampled negatives, ``[K]``). :class:`ColumnSums` adds the entries up at exactly those places
without a ``[B, distinct columns]`` array: the shared part in a dense ``[B, K + 1]``
accumulator (``K`` is a fixed few thousand), the per-example part by a sorted join of
``example * size + item`` keys. Each place's entries are added in entry order, as
:class:`DistinctColumnSums` (one ``[B, distinct columns + 1]`` accumulator) adds them, so
the sums are the same floats. Training keeps the latter: a batch of examples touches a few
thousand columns, and its backward pass accumulates the gradients in the order training has
always used.
"""

from __future__ import annotations

import torch

__all__ = ["ColumnSums", "DistinctColumnSums", "unique_rows"]


def unique_rows(rows: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(rows, return_inverse=True)`` of row ids in ``[0, size)`` from one
    ``size``-long table instead of a sort: the same sorted ids and inverse (same shape as
    ``rows``), several times cheaper for the millions of entries of a scoring batch."""
    seen = torch.zeros(size, dtype=torch.bool, device=rows.device)
    seen[rows] = True
    ids = torch.nonzero(seen).squeeze(1)
    place = torch.zeros(size, dtype=torch.long, device=rows.device)
    place[ids] = torch.arange(len(ids), device=rows.device)
    return ids, place[rows]


class ColumnSums:
    """``sums(owner, item, value)``: for each example ``b`` and each of its columns ``c``
    (``cols[b]`` then ``shared``), the sum of ``value`` over the entries with ``owner == b``
    and ``item == c`` (0 where none) -> ``[B, C + K]`` in ``value``'s dtype.

    ``cols`` int64 [B, C] and ``shared`` int64 [K] are row ids in ``[0, size)``.
    """

    def __init__(self, cols: torch.Tensor, shared: torch.Tensor, size: int) -> None:
        self.B, self.C = cols.shape
        self.size, dev = size, cols.device
        distinct, self.shared_at = unique_rows(shared, size)  # shared columns may repeat
        self.K = len(distinct)
        # item -> its place among the distinct shared columns (K: not shared); one size-long
        # index per batch, cheaper than a search per entry
        self.spot = torch.full((size,), self.K, dtype=torch.long, device=dev)
        self.spot[distinct] = torch.arange(self.K, device=dev)
        self.query = (torch.arange(self.B, device=dev)[:, None] * size + cols).reshape(-1)

    def __call__(self, owner: torch.Tensor, item: torch.Tensor,
                 value: torch.Tensor) -> torch.Tensor:
        B, C, K, dev = self.B, self.C, self.K, value.device
        dense = torch.zeros(B * (K + 1), device=dev, dtype=value.dtype)
        dense = dense.index_add(0, owner * (K + 1) + self.spot[item], value)
        dense = dense.view(B, K + 1)[:, self.shared_at]
        if C == 0 or value.numel() == 0:
            own = torch.zeros(B, C, device=dev, dtype=value.dtype)
        else:
            keys, inv = torch.unique(owner * self.size + item, return_inverse=True)
            sums = torch.zeros(len(keys), device=dev, dtype=value.dtype).index_add(0, inv, value)
            at = torch.searchsorted(keys, self.query).clamp_(max=len(keys) - 1)
            own = torch.where(keys[at] == self.query, sums[at],
                              torch.zeros((), device=dev, dtype=value.dtype)).view(B, C)
        return torch.cat([own, dense], 1)


class DistinctColumnSums:
    """The sums of :class:`ColumnSums` (same arguments and result) by one accumulator over
    the batch's distinct columns, ``[B, U + 1]``: cheap for a training batch, B x U too large
    for a scoring batch."""

    def __init__(self, cols: torch.Tensor, shared: torch.Tensor, size: int) -> None:
        self.B, dev = cols.shape[0], cols.device
        every = torch.cat([cols, shared.unsqueeze(0).expand(self.B, -1)], 1)  # [B, C + K]
        ucols, self.cinv = unique_rows(every, size)
        self.U = len(ucols)
        self.where = torch.full((size,), self.U, dtype=torch.long, device=dev)
        self.where[ucols] = torch.arange(self.U, device=dev)

    def __call__(self, owner: torch.Tensor, item: torch.Tensor,
                 value: torch.Tensor) -> torch.Tensor:
        flat = owner * (self.U + 1) + self.where[item]  # entries off the columns: column U
        acc = torch.zeros(self.B * (self.U + 1), device=value.device, dtype=value.dtype)
        return acc.index_add(0, flat, value).view(self.B, self.U + 1).gather(1, self.cinv)
