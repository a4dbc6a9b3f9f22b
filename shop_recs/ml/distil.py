"""Distillation of content onto learned item embeddings (issue 17's content tower, post hoc).

The network learns an id row and an output bias per bought product on top of what its content
(name words, category, price band, text-encoder vector) says. A new product has content only.
Here a ridge regression, fitted on the bought products, predicts the id row and the bias from
the *raw* content (word multi-hot, category and price one-hots, text vector: richer than the
network's summed content embedding), and writes the prediction into the new products' rows.
Closed form on the products (dual when features outnumber them): a second or so, no extra
training pass — the cheap end of the distillation family (cf. DropoutNet, Volkovs et al. 2017;
"LinMap"-style content-to-embedding regressions), chosen by measurement on the cold protocol.
"""

from __future__ import annotations

import torch

__all__ = ["content_features", "distil_new_rows"]


def content_features(model) -> torch.Tensor:
    """Raw content of every row [N+1, F]: word multi-hot (L2-normalised), category one-hot,
    price band one-hot, text vector, and a constant (the intercept)."""
    c = model.config
    n = c.n_items + 1
    dev = model.item_words.device  # built where the model lives (a GPU run scores there)
    words = torch.zeros(n, c.n_words + 1, device=dev)
    words.scatter_(1, model.item_words, 1.0)
    words[:, 0] = 0.0  # padding
    words = words / words.norm(dim=1, keepdim=True).clamp(min=1.0)
    cats = torch.nn.functional.one_hot(model.item_cat, c.n_categories + 1).float()
    price = torch.nn.functional.one_hot(model.item_price, c.n_price_bands).float()
    parts = [words, cats, price]
    if c.text_dim > 0:
        parts.append(model.item_text.float())
    parts.append(torch.ones(n, 1, device=dev))
    return torch.cat(parts, dim=1)


@torch.no_grad()
def distil_new_rows(model, rows: torch.Tensor, penalty: float = 1.0) -> None:
    """Overwrite ``item_emb`` and ``out_bias`` at ``rows`` (the new products, 1-based) with a
    ridge prediction from their content, fitted on every other non-padding row."""
    if penalty <= 0:
        raise ValueError(f"distillation penalty must be positive, got {penalty}")
    x = content_features(model)
    rows = rows.to(x.device)
    known = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    known[0] = False
    known[rows] = False
    y = torch.cat([model.item_emb.weight.float(), model.out_bias.float()[:, None]], dim=1)
    xk, yk = x[known].double(), y[known].double()
    mean = yk.mean(0)  # fit the deviation from the average bought product
    yk = yk - mean
    if xk.shape[1] <= xk.shape[0]:  # primal: (X'X + aI) W = X'Y
        gram = xk.T @ xk + penalty * torch.eye(xk.shape[1], dtype=xk.dtype, device=x.device)
        w = torch.linalg.solve(gram, xk.T @ yk)
        pred = x[rows].double() @ w
    else:  # dual: W = X' (XX' + aI)^-1 Y
        gram = xk @ xk.T + penalty * torch.eye(xk.shape[0], dtype=xk.dtype, device=x.device)
        alpha = torch.linalg.solve(gram, yk)
        pred = (x[rows].double() @ xk.T) @ alpha
    pred = (pred + mean).to(model.item_emb.weight.dtype)
    model.item_emb.weight[rows] = pred[:, :-1]
    model.out_bias[rows] = pred[:, -1].to(model.out_bias.dtype)
