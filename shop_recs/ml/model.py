"""The bundle model: self-attention over the items of a basket, scoring the whole catalogue.

Input: a set of context items (the product on a page, or a cart) and, optionally, the
customer's earlier purchases (most recent order first, an item once per order that held it,
so re-ordered products weigh more). Each item is an id embedding plus embeddings
of its attributes (category, price band, name words, and with ``text_dim`` a pretrained
sentence encoder's vector of name and description, projected linearly: ``shop_recs.ml.text``),
so rarely bought and new products still land near similar products (``content_table``: the
content tower; ``shop_recs.ml.distil`` predicts a new product's id row from it). A learned [CLS] token attends over the set (no positions: a basket is
a set) and its output is matched against every item's representation (a full softmax), or,
for a large catalogue, against some rows only (``forward(columns=, shared=)``: each example's
targets and the batch's sampled negatives, or an anchor's candidates; ``shop_recs.ml.sampled``).

A *repeat head* adds a bonus to items in the customer's history (by recency and by how well they
fit the context): wholesale customers re-order the same products, which no item-item model sees.

An optional *item-item prior* (``use_prior``; an EASE matrix set by :meth:`set_prior`) adds
``prior_scale * sum_{c in context} P[c, :]`` plus recency-weighted prior rows of the history to
the logits, so the network learns the residual the linear model misses (Wide & Deep style).
While training, each basket meets a prior fitted on the *other* half of the training orders
(out-of-fold), otherwise the network would learn to trust a prior that memorised its targets.
Above ``MAX_PRIOR_ITEMS`` products the prior is a CSR matrix pruned per row
(``sparse_prior``, :meth:`set_sparse_prior`): same logits, memory in its entries, not (N+1)²
(``shop_recs.ml.prior``).

Index 0 is padding; catalogue item ``j`` (``shop_recs.ml.types``) is row ``j + 1`` here.

Entry points (RecBole's split): :meth:`BundleModel.forward` returns logits for training,
:meth:`BundleModel.full_sort_predict` scores every item for inference.
References: Vaswani et al. 2017; Lee et al. 2019 (Set Transformer); Kang & McAuley 2018 (SASRec);
Ren et al. 2019 (RepeatNet) for the repeat idea.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from shop_recs.ml.columns import ColumnSums, DistinctColumnSums, unique_rows
from shop_recs.ml.prior import ItemPrior

__all__ = ["BundleModelConfig", "BundleModel"]

TABLE_ROWS = 65_536  # item rows embedded at once above this (the word lookup is rows x words x d)


@dataclass
class BundleModelConfig:
    n_items: int  # catalogue size (the padding row is added on top)
    n_words: int = 0  # name-word vocabulary size (0 = padding only)
    max_words: int = 8  # name words kept per item
    n_categories: int = 0  # category vocabulary size
    n_price_bands: int = 1  # price bands incl. "unknown"
    d_model: int = 64  # width of every embedding and of the encoder
    n_heads: int = 4  # attention heads
    n_layers: int = 2  # encoder blocks
    dropout: float = 0.1  # dropout on the input tokens (the encoder has none: it costs more
    # CPU time in attention masks than it buys in accuracy here)
    id_dropout: float = 0.1  # chance to hide an item's id embedding so attributes must carry it
    # the same on the output side (the items scored): content alone must rank a product, as
    # it will for one nobody has bought yet (issue 17's content path; 0 = off)
    out_id_dropout: float = 0.0
    history_buckets: int = 8  # recency buckets of the repeat head (log2 of the position)
    use_history: bool = True  # read the customer's earlier purchases
    use_prior: bool = True  # add a linear item-item prior (EASE) to the logits, see set_prior()
    # large catalogues (issue 15): the prior is a pruned CSR matrix, never (N+1)^2 dense;
    # prior_nnz is its number of entries (set by set_sparse_prior, saved with the config)
    sparse_prior: bool = False
    prior_nnz: int = 0
    # content tower input (issue 17): width of a pretrained text encoder's product vectors
    # (shop_recs.ml.text), projected into the item space; 0 = no encoder
    text_dim: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class BundleModel(ItemPrior, nn.Module):
    def __init__(self, config: BundleModelConfig) -> None:
        super().__init__()
        self.config = c = config
        d = c.d_model
        self.item_emb = nn.Embedding(c.n_items + 1, d, padding_idx=0)
        self.word_emb = nn.Embedding(c.n_words + 1, d, padding_idx=0)
        self.cat_emb = nn.Embedding(c.n_categories + 1, d, padding_idx=0)
        self.price_emb = nn.Embedding(c.n_price_bands, d)
        self.segment = nn.Embedding(3, d)  # 0 = [CLS], 1 = context item, 2 = history item
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        block = nn.TransformerEncoderLayer(d, c.n_heads, 4 * d, 0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(block, c.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(c.dropout)
        self.out_bias = nn.Parameter(torch.zeros(c.n_items + 1))
        self.repeat_recency = nn.Parameter(torch.zeros(c.history_buckets))
        self.history_recency = nn.Parameter(torch.zeros(c.history_buckets))
        self.repeat_proj = nn.Linear(d, d, bias=False)
        # attribute tables; filled by set_features(), saved with the weights
        self.register_buffer("item_words", torch.zeros(c.n_items + 1, c.max_words, dtype=torch.long))
        self.register_buffer("item_cat", torch.zeros(c.n_items + 1, dtype=torch.long))
        self.register_buffer("item_price", torch.zeros(c.n_items + 1, dtype=torch.long))
        if c.text_dim > 0:  # encoder vectors per row, and their projection into the item space
            self.register_buffer("item_text", torch.zeros(c.n_items + 1, c.text_dim))
            self.text_proj = nn.Linear(c.text_dim, d, bias=False)
        self.prior_scale = nn.Parameter(torch.tensor(5.0))
        # weight of the prior rows of history items, per recency bucket ("what people buy
        # with what this customer bought before")
        self.history_prior = nn.Parameter(torch.zeros(c.history_buckets))
        # item-item prior [N+1, N+1], row 0 = padding; saved with the weights when used.
        # prior_folds (training only, not saved): out-of-fold priors so the model never learns
        # to trust a prior that has already seen the basket it is asked to complete
        dense_prior = c.use_prior and not c.sparse_prior
        self.register_buffer("prior", torch.zeros((c.n_items + 1, c.n_items + 1)
                                                  if dense_prior else (0, 0)))
        self.register_buffer("prior_folds", torch.zeros(0), persistent=False)
        if c.use_prior and c.sparse_prior:  # CSR of the [N+1, N+1] prior (row 0 = padding)
            self.register_buffer("prior_crow", torch.zeros(c.n_items + 2, dtype=torch.long))
            # int32 columns: 4 bytes an entry less (10^8 entries at 10^6 products)
            self.register_buffer("prior_col", torch.zeros(c.prior_nnz, dtype=torch.int32))
            self.register_buffer("prior_val", torch.zeros(c.prior_nnz))
        self.n_sparse_folds = 0  # out-of-fold CSR priors (training only): prior_fold{f}_*
        self._table_cache = None  # (tensors and their versions, item_table()) while scoring
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    def set_features(self, words: torch.Tensor, category: torch.Tensor, price_band: torch.Tensor,
                     text: torch.Tensor | None = None) -> None:
        """Attribute ids per catalogue item ([n_items, max_words], [n_items], [n_items]) and
        the text encoder's vectors ([n_items, text_dim], when the config has ``text_dim``)."""
        self.item_words[1:] = words
        self.item_cat[1:] = category
        self.item_price[1:] = price_band
        if self.config.text_dim > 0:
            if text is None or tuple(text.shape) != (self.config.n_items, self.config.text_dim):
                raise ValueError(f"text vectors must be [{self.config.n_items}, "
                                 f"{self.config.text_dim}], got "
                                 f"{None if text is None else tuple(text.shape)}")
            self.item_text[1:] = text

    def _content_parts(self, rows: slice = slice(None)) -> list[torch.Tensor]:
        words = self.item_words[rows]  # [N+1, W]
        wmask = (words > 0).unsqueeze(-1).to(self.word_emb.weight.dtype)
        wvec = (self.word_emb(words) * wmask).sum(-2) / wmask.sum(-2).clamp(min=1.0)
        parts = [wvec, self.cat_emb(self.item_cat[rows]), self.price_emb(self.item_price[rows])]
        if self.config.text_dim > 0:
            parts.append(self.text_proj(self.item_text[rows]))
        return parts

    def content_table(self) -> torch.Tensor:
        """What a product's content says about it [N+1, d]: name words + category + price
        (+ the projected text vector). ``item_table`` adds the id embedding to it."""
        first, *rest = self._content_parts()
        for part in rest:
            first = first + part
        return first

    def __getstate__(self):  # copies and pickles never carry the scoring cache
        return {**super().__getstate__(), "_table_cache": None}

    def scoring_table(self) -> torch.Tensor:
        """:meth:`item_table` kept while no weight or item attribute changes (each tensor's
        version counter, bumped by every in-place update). Scoring by columns in eval mode
        reads it instead of embedding a chunk's rows at every call: at 10^5 products and more
        the chunks of one listing pass embed the same rows hundreds of times (issue 15)."""
        tensors = [*self.parameters(), self.item_words, self.item_cat, self.item_price,
                   *([self.item_text] if self.config.text_dim > 0 else [])]
        key = [(t, t._version) for t in tensors]
        cached = self._table_cache
        if cached is None or len(cached[0]) != len(key) or any(
                a is not b or va != vb for (a, va), (b, vb) in zip(cached[0], key)):
            with torch.no_grad():
                cached = self._table_cache = (key, self.item_table())
        return cached[1]

    def item_table(self) -> torch.Tensor:
        """Representation of every row (padding included) [N+1, d]: id + content.

        Computed once per forward pass and indexed, instead of embedding each occurrence.
        """
        n = self.item_emb.weight.shape[0]
        if n > TABLE_ROWS:  # a block of rows at a time: the word lookup is [rows, words, d]
            return torch.cat([self._table_rows(slice(s, s + TABLE_ROWS))
                              for s in range(0, n, TABLE_ROWS)])
        return self._table_rows(slice(None))

    def _table_rows(self, rows: slice) -> torch.Tensor:
        out = self.item_emb.weight[rows]
        for part in self._content_parts(rows):  # summed in this order: the same floats
            out = out + part
        return out

    def item_rows(self, ids: torch.Tensor, id_rows: torch.Tensor | None = None) -> torch.Tensor:
        """``item_table()[ids]`` ([..., d]) without computing the other rows: what the sampled
        path uses, where the catalogue is too large to embed whole at every step.
        ``id_rows``: ``item_emb(ids)`` when the caller already has it."""
        words = self.item_words[ids]  # [..., W]
        wmask = (words > 0).unsqueeze(-1).to(self.word_emb.weight.dtype)
        wvec = (self.word_emb(words) * wmask).sum(-2) / wmask.sum(-2).clamp(min=1.0)
        out = (self.item_emb(ids) if id_rows is None else id_rows) + wvec
        out = out + self.cat_emb(self.item_cat[ids]) + self.price_emb(self.item_price[ids])
        if self.config.text_dim > 0:
            out = out + self.text_proj(self.item_text[ids])
        return out

    def _lookup(self, table: torch.Tensor, idx: torch.Tensor,
                pos: torch.Tensor | None = None, id_rows: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Rows ``idx`` of ``table``; while training, some ids are hidden (id dropout) so the
        attributes alone must carry the item, as they will for new products. ``pos``: where
        the rows of ``idx`` sit in ``table`` when it holds only some rows (sampled path), and
        ``id_rows`` their id embeddings (one gather of ``item_emb`` per step: each gather's
        backward writes an n x d gradient)."""
        # F.embedding, not table[idx]: the backward of indexing accumulates the many padding
        # rows one by one (90% of a CUDA step); embedding's skips the padding index
        out = F.embedding(idx if pos is None else pos, table, padding_idx=0)
        if self.training and self.config.id_dropout > 0:
            drop = torch.rand(idx.shape, device=idx.device) < self.config.id_dropout
            ids = self.item_emb(idx) if id_rows is None else F.embedding(pos, id_rows)
            out = out - drop.unsqueeze(-1) * ids
        return out

    def _buckets(self, length: int, device) -> torch.Tensor:
        pos = torch.arange(length, device=device)
        return torch.log2(pos.float() + 1).long().clamp(max=self.config.history_buckets - 1)

    def encode(self, context: torch.Tensor, history: torch.Tensor | None,
               table: torch.Tensor, pos: tuple | None = None) -> torch.Tensor:
        """context [B, Lc], history [B, Lh] (0 = padding), table [N+1, d] -> query [B, d].

        ``pos`` = (context rows, history rows, id embeddings of the rows) when ``table`` holds
        only some rows.
        """
        B = context.shape[0]
        cpos, hpos, id_rows = pos if pos is not None else (None, None, None)
        parts = [self.cls.expand(B, -1, -1) + self.segment.weight[0],
                 self._lookup(table, context, cpos, id_rows) + self.segment.weight[1]]
        pad = [torch.zeros(B, 1, dtype=torch.bool, device=context.device), context == 0]
        if history is not None and self.config.use_history and history.shape[1] > 0:
            # the history enters as ONE summary token (a recency-weighted mean), not one token
            # per item: attention cost stays that of the basket, which matters on CPU
            w = torch.softmax(self.history_recency, 0)[self._buckets(history.shape[1],
                                                                     history.device)]
            w = w[None, :] * (history > 0)  # [B, Lh]
            summary = (w.unsqueeze(-1) * self._lookup(table, history, hpos, id_rows)).sum(1)
            summary = summary / w.sum(1, keepdim=True).clamp(min=1e-6)  # [B, d]
            parts.append(summary.unsqueeze(1) + self.segment.weight[2])
            pad.append((history > 0).sum(1, keepdim=True) == 0)
        x = self.drop(torch.cat(parts, dim=1))  # [B, 1+Lc(+1), d]
        x = self.encoder(x, src_key_padding_mask=torch.cat(pad, dim=1))
        return self.norm(x[:, 0])  # the [CLS] output

    def forward(self, context: torch.Tensor, history: torch.Tensor | None = None,
                fold: int | None = None, columns: torch.Tensor | None = None,
                shared: torch.Tensor | None = None, table: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Logits over all rows [B, n_items + 1]; context items and padding are set to -inf.

        ``fold`` picks the batch's out-of-fold prior while training (None = the full prior).
        With ``columns`` (rows [B, C] per example) and/or ``shared`` (rows [K] for every
        example), only those logits: [B, C + K] (the sampled path, ``shop_recs.ml.sampled``).
        """
        if columns is not None or shared is not None:
            return self._forward_columns(context, history, fold, columns, shared)
        table = self.item_table() if table is None else table  # [N+1, d]
        h = self.encode(context, history, table)  # [B, d]
        out_table = table
        if self.training and self.config.out_id_dropout > 0:
            drop = torch.rand(table.shape[0], 1, device=table.device) < self.config.out_id_dropout
            out_table = table - drop.to(table.dtype) * self.item_emb.weight
        logits = h @ out_table.T + self.out_bias  # [B, N+1]
        if self.config.use_prior:
            logits = logits + self.prior_scale * self._prior_logits(context, fold)
            if history is not None and self.config.use_history and history.shape[1] > 0:
                w = self.history_prior[self._buckets(history.shape[1], history.device)]
                w = w[None, :].expand(history.shape[0], -1).contiguous()  # [B, Lh]
                logits = logits + self._prior_logits(history, fold, w.to(self.prior.dtype))
        if history is not None and self.config.use_history and history.shape[1] > 0:
            logits = logits + self._repeat_bonus(h, history, table)
        logits = logits.float()
        logits[:, 0] = float("-inf")
        return logits.scatter(1, context, float("-inf"))

    def _repeat_values(self, h: torch.Tensor, history: torch.Tensor, rows: torch.Tensor
                       ) -> torch.Tensor:
        """Bonus of each history entry [B, Lh]: recency bucket + fit with the context."""
        bucket = self._buckets(history.shape[1], h.device)
        fit = torch.einsum("bd,bld->bl", self.repeat_proj(h), rows)  # [B, Lh]
        return (self.repeat_recency[bucket][None, :] + fit) * (history > 0)

    def _repeat_bonus(self, h: torch.Tensor, history: torch.Tensor, table: torch.Tensor
                      ) -> torch.Tensor:
        """Bonus for history items: recency bucket + fit with the context. -> [B, N+1]."""
        rows = F.embedding(history, table, padding_idx=0)  # [B, Lh, d], see _lookup
        bonus = self._repeat_values(h, history, rows)
        out = torch.zeros(h.shape[0], self.config.n_items + 1, device=h.device, dtype=bonus.dtype)
        return out.scatter_add(1, history, bonus)  # padding lands on row 0, masked later

    def _forward_columns(self, context: torch.Tensor, history: torch.Tensor | None,
                         fold: int | None, columns: torch.Tensor | None,
                         shared: torch.Tensor | None) -> torch.Tensor:
        """:meth:`forward`'s logits at some rows only -> [B, C + K]; nothing here is n-wide.

        Training embeds the rows the batch touches (context, history, columns); scoring reads
        them from :meth:`scoring_table`. The prior and the repeat bonus are summed from their
        entries onto the asked columns only (:class:`~shop_recs.ml.columns.ColumnSums`).
        The same terms, added in the same order, as the full logits.
        """
        B, dev = context.shape[0], context.device
        cols = columns if columns is not None else context.new_zeros(B, 0)
        sh = shared if shared is not None else context.new_zeros(0)
        has_hist = history is not None and self.config.use_history and history.shape[1] > 0
        if self.training:  # the rows the batch touches, embedded once (their gradients)
            self._table_cache = None
            pieces = [context.new_zeros(1), context.reshape(-1), cols.reshape(-1), sh]
            if has_hist:
                pieces.append(history.reshape(-1))
            ids, inv = unique_rows(torch.cat(pieces), self.config.n_items + 1)  # ids[0] = 0
            _, cpos, colpos, shpos, *hpos = torch.split(inv, [p.numel() for p in pieces])
            cpos, colpos = cpos.view_as(context), colpos.view_as(cols)
            hpos = hpos[0].view_as(history) if has_hist else None
            id_rows = self.item_emb(ids)  # [U, d]
            table = self.item_rows(ids, id_rows)  # [U, d]
        else:  # scoring: every row, embedded once for every call (no dropout reads ids)
            cpos, colpos, shpos, hpos = context, cols, sh, history if has_hist else None
            id_rows, table = None, self.scoring_table()
        h = self.encode(context, history, table, (cpos, hpos, id_rows))
        out_table = table
        if self.training and self.config.out_id_dropout > 0:
            drop = torch.rand(table.shape[0], 1, device=dev) < self.config.out_id_dropout
            out_table = table - drop.to(table.dtype) * id_rows
        every = torch.cat([cols, sh.unsqueeze(0).expand(B, -1)], 1)  # rows [B, C + K]
        logits = torch.cat([
            torch.einsum("bd,bcd->bc", h, F.embedding(colpos, out_table)),
            h @ F.embedding(shpos, out_table).T], 1) + self.out_bias[every]
        sums = DistinctColumnSums if self.training else ColumnSums
        at_columns = sums(cols, sh, self.config.n_items + 1)  # entries -> [B, C + K]

        def prior_at(items: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
            if self.config.sparse_prior:
                return at_columns(*self._sparse_prior_entries(items, fold, weights))
            # a dense prior exists only below the dense limit, where n-wide rows are cheap
            return self._prior_logits(items, fold, weights).gather(1, every)

        if self.config.use_prior:
            logits = logits + self.prior_scale * prior_at(context, None)
            if has_hist:
                w = self.history_prior[self._buckets(history.shape[1], history.device)]
                w = w[None, :].expand(history.shape[0], -1).contiguous()  # [B, Lh]
                logits = logits + prior_at(history, w.to(self.prior.dtype))
        if has_hist:
            bonus = self._repeat_values(h, history, F.embedding(hpos, table))  # [B, Lh]
            owner = torch.arange(B, device=dev).repeat_interleave(history.shape[1])
            logits = logits + at_columns(owner, history.reshape(-1), bonus.reshape(-1))
        logits = logits.float()
        owner = torch.arange(B, device=dev).repeat_interleave(context.shape[1])
        in_context = at_columns(owner, context.reshape(-1),
                                torch.ones(context.numel(), device=dev)) > 0
        return logits.masked_fill(in_context | (every == 0), float("-inf"))

    @torch.no_grad()
    def full_sort_predict(self, context: torch.Tensor, history: torch.Tensor | None = None,
                          table: torch.Tensor | None = None) -> torch.Tensor:
        """Log-probabilities of every catalogue item [B, n_items] (padding row dropped).
        ``table``: :meth:`item_table`, when the caller scores several batches with it."""
        self.eval()
        return F.log_softmax(self.forward(context, history, table=table), dim=-1)[:, 1:]
