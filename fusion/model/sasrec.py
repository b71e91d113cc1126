"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over a user's item sequence, as a
sequential baseline in the harness (recommend splits only).

Published Beauty configuration: 2 blocks, 1 head, hidden size 50, maximum length 50, dropout 0.5,
learned positional embeddings, Adam at lr 1e-3, batch 128. Item embeddings are shared between
input and output (scores are dot products with them).

Two losses: `"bce"`, the paper's (each position's next item against one uniformly sampled
negative; it needs ~200 epochs), and `"ce"`, full softmax cross-entropy over every product at
each real position, which converges in a few epochs and ranks better (Klenitskiy & Vasilev,
RecSys 2023). The default `"auto"` takes `"ce"` — the stronger baseline — up to
FULL_SOFTMAX_MAX_PRODUCTS products (its logits are positions × products) and `"bce"` above."""

from __future__ import annotations

import copy
import logging
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusion.config import FULL_SOFTMAX_MAX_PRODUCTS
from fusion.data.histories import history_matrix
from fusion.data.splits import RecSplit, Split, Stage
from fusion.evaluation.harness import evaluate_scorer

log = logging.getLogger(__name__)


class SASRecNet(nn.Module):
    """The network: item + position embeddings, pre-norm transformer blocks with a causal mask,
    a final layer norm. Item index 0 is padding (products are shifted by one)."""

    def __init__(
        self, num_products: int, dim: int, max_len: int, blocks: int, heads: int, dropout: float
    ) -> None:
        super().__init__()
        self.items = nn.Embedding(num_products + 1, dim, padding_idx=0)
        self.positions = nn.Embedding(max_len, dim)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=dim, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.heads = heads
        # Glorot-initialised embeddings (as the reference implementations): N(0, 1) rows times
        # sqrt(dim) give saturated logits, and the model then barely learns in early epochs.
        for table in (self.items, self.positions):
            nn.init.xavier_normal_(table.weight)

    def forward(self, seq: Tensor) -> Tensor:
        """Hidden states [B, L, d] of right-aligned sequences `seq` [B, L] (0 = padding)."""
        pad = seq == 0
        # Right-aligned: the last item always has the last position, however short `seq` is.
        x = self.items(seq) * self.items.embedding_dim**0.5 + self.positions.weight[-seq.size(1) :]
        x = self.dropout(x) * ~pad.unsqueeze(-1)
        length = seq.size(1)
        future = torch.ones(length, length, dtype=torch.bool).triu(1)
        # Padding keys are masked too; each position may always see itself, so no row of the
        # mask is all True (that would give NaN for the leading padding positions).
        blocked = (future | pad.unsqueeze(1)) & ~torch.eye(length, dtype=torch.bool)
        mask = blocked.repeat_interleave(self.heads, dim=0)
        return self.norm(self.encoder(x, mask=mask))

    def scores(self, hidden: Tensor) -> Tensor:
        """[B, num_products] dot products of `hidden` [B, d] with every product embedding."""
        return hidden @ self.items.weight[1:].T


class SASRecScorer:
    """SASRec fitted on a recommend split's training sequences, early-stopped on a validation
    metric (like `LightGCNScorer`); a user's query is their history at the stage (training
    items, plus the validation item at test time)."""

    def __init__(
        self,
        dim: int = 50,
        max_len: int = 50,
        blocks: int = 2,
        heads: int = 1,
        dropout: float = 0.5,
        loss: str = "auto",
        epochs: int = 200,
        batch_size: int = 128,
        lr: float = 1e-3,
        patience: int = 5,
        metric: str = "recall@20",
        valid_queries: int = 4000,
        max_minutes: float = 20.0,
        seed: int = 0,
    ) -> None:
        self.dim, self.max_len, self.blocks, self.heads = dim, max_len, blocks, heads
        if loss not in ("auto", "ce", "bce"):
            raise ValueError(f"SASRec loss must be 'auto', 'ce' or 'bce', not {loss!r}")
        self.dropout, self.epochs, self.batch_size, self.lr = dropout, epochs, batch_size, lr
        self.loss = loss
        self.patience, self.metric, self.seed = patience, metric, seed
        self.valid_queries, self.max_minutes = valid_queries, max_minutes

    def fit(self, split: Split) -> SASRecScorer:
        """Train on every user's training sequence (predict each next item from the ones before
        it); keep the best validation epoch, stop after `patience` epochs without improvement
        or once an epoch ends past `max_minutes`."""
        if not isinstance(split, RecSplit):
            raise ValueError(f"SASRec needs a recommend split, not a {split.task!r} one")
        self.split, self._inputs = split, {}
        num_products = split.num_products
        sequences = self._padded(split.history("valid"), self.max_len + 1)
        sequences = sequences[(sequences > 0).sum(1) >= 2]  # a next item to predict
        with torch.random.fork_rng():  # seeded init and dropout, global RNG untouched
            torch.manual_seed(self.seed)
            self.net = SASRecNet(
                num_products, self.dim, self.max_len, self.blocks, self.heads, self.dropout
            )
            self._train(sequences, num_products)
        return self

    def _train(self, sequences: Tensor, num_products: int) -> None:
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr, betas=(0.9, 0.98))
        gen = torch.Generator().manual_seed(self.seed)
        valid = self.split.sample_queries("valid", self.valid_queries, self.seed)
        best, stale, best_state = float("-inf"), 0, None
        self.history: list[float] = []
        deadline = time.monotonic() + 60 * self.max_minutes
        for _ in range(self.epochs):
            self.net.train()
            for batch in torch.randperm(sequences.size(0), generator=gen).split(self.batch_size):
                seq = sequences[batch]
                seq = seq[:, -int((seq > 0).sum(1).max()) :]  # drop all-padding columns
                inputs, positives = seq[:, :-1], seq[:, 1:]
                loss = self._loss(self.net(inputs), positives, num_products, gen)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if not valid.numel():
                continue
            score = evaluate_scorer(self, self.split, "valid", queries=valid)[self.metric]
            self.history.append(score)
            log.info("SASRec epoch %d: %s %.4f", len(self.history), self.metric, score)
            if score > best:
                best, stale, best_state = score, 0, copy.deepcopy(self.net.state_dict())
            else:
                stale += 1
                if stale >= self.patience:
                    break
            if time.monotonic() > deadline:
                break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        self.net.eval()

    def _loss(self, hidden: Tensor, positives: Tensor, num_products: int, gen) -> Tensor:
        """The training loss over the real (non-padding) positions of a batch."""
        real = positives > 0
        hidden, positives = hidden[real], positives[real]
        full = (
            num_products <= FULL_SOFTMAX_MAX_PRODUCTS if self.loss == "auto" else self.loss == "ce"
        )
        if full:
            return F.cross_entropy(self.net.scores(hidden), positives - 1)
        negatives = torch.randint(1, num_products + 1, positives.shape, generator=gen)
        items = self.net.items
        pos = (hidden * items(positives)).sum(-1)
        neg = (hidden * items(negatives)).sum(-1)
        return F.binary_cross_entropy_with_logits(
            pos, torch.ones_like(pos)
        ) + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))

    def _padded(self, history: dict[int, Tensor], length: int) -> Tensor:
        """[num_users, length] right-aligned item sequences, shifted so 0 is padding."""
        users = self.split.train_graph["user"].num_nodes
        return history_matrix(history, users, length) + 1

    @torch.no_grad()
    def full_sort_predict(self, query_idx: Tensor, stage: Stage = "test") -> Tensor:
        if stage not in self._inputs:
            self._inputs[stage] = self._padded(self.split.history(stage), self.max_len)
        was_training = self.net.training
        self.net.eval()
        hidden = self.net(self._inputs[stage][query_idx])[:, -1]
        self.net.train(was_training)
        return self.net.scores(hidden)
