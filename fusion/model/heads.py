"""Per-objective heads on the fused user/product representation (task `rank`): a click head
and conditional cart, conversion and satisfaction heads, combined the ESMM way —
P(cart) = pCTR·pCART, P(purchase) = pCTR·pCVR, P(rating ≥ 4) = pCTR·pSAT, each trained over
the entire space of products — and revenue = P(purchase)·price.

Each head scores (user, product) by a dot product of per-head projections of the two vectors
plus a per-product bias, so a full ranking stays one matmul per head. With `experts > 0` the
projections are a multi-gate mixture of experts (MMoE): shared expert maps, mixed per head by
a softmax gate of the vector itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HEADS = ("click", "cart", "purchase", "rating")  # the conditional heads' objectives (+ click)
# The objective each head's probability answers, when chained with the click head.
CHAINED = ("cart", "purchase", "rating")


class Tower(nn.Module):
    """One vector → one projection per head: a linear map each, or a mixture of experts."""

    def __init__(self, dim: int, heads: int, experts: int) -> None:
        super().__init__()
        self.heads, self.experts = heads, experts
        width = experts or heads
        self.maps = nn.Linear(dim, width * dim)
        self.gates = nn.Linear(dim, heads * experts) if experts else None

    def forward(self, x: Tensor) -> Tensor:
        """``[heads, *x.shape]``."""
        d = x.shape[-1]
        maps = self.maps(x).view(*x.shape[:-1], -1, d)  # [..., width, d]
        if self.gates is None:
            return maps.movedim(-2, 0)
        gate = torch.softmax(self.gates(x).view(*x.shape[:-1], self.heads, self.experts), -1)
        return (gate @ maps).movedim(-2, 0)  # [..., heads, d] → [heads, ..., d]


class MultiObjectiveHeads(nn.Module):
    """Logits of the click head — a learnt scale and offset of the shared fused score
    ``<u, i>``, so it ranks exactly as the single-objective model does — and of the cart,
    purchase-given-click and rating-given-click heads: each its own multiple of ``<u, i>`` plus
    a per-head interaction of projected vectors and a per-product bias."""

    def __init__(self, dim: int, experts: int = 0) -> None:
        super().__init__()
        conditional = len(HEADS) - 1
        self.users = Tower(dim, conditional, experts)
        self.items = Tower(dim, conditional, experts)
        self.bias = nn.Linear(dim, conditional)
        self.shared = nn.Parameter(torch.ones(len(HEADS)))
        self.offset = nn.Parameter(torch.zeros(()))  # the click head's
        self.scale = dim**-0.5

    def forward(self, users: Tensor, items: Tensor) -> dict[str, Tensor]:
        """Logits ``[B, C]`` per head for every pair of `users` [B, d] and `items` [C, d]."""
        u, i = self.users(users), self.items(items)
        own = self.scale * (u @ i.transpose(1, 2)) + self.bias(items).T.unsqueeze(1)
        return self._heads(users @ items.T, own)

    def pairs(self, users: Tensor, items: Tensor) -> dict[str, Tensor]:
        """Logits ``[B]`` per head of the row-wise pairs (`users[b]`, `items[b]`)."""
        u, i = self.users(users), self.items(items)
        own = self.scale * (u * i).sum(-1) + self.bias(items).T
        return self._heads((users * items).sum(-1), own)

    def _heads(self, shared: Tensor, own: Tensor) -> dict[str, Tensor]:
        scaled = self.shared.view(-1, *[1] * shared.dim()) * shared
        logits = [scaled[0] + self.offset, *(scaled[1:] + own)]
        return dict(zip(HEADS, logits, strict=True))


def log_probabilities(
    logits: dict[str, Tensor], conversion: str, fixed_click: bool = False
) -> dict[str, Tensor]:
    """log P per objective from head logits: click = log σ(click); cart, purchase and rating
    chained with it (``entire_space``, ESMM) or the conditional head alone (``viewed_only``:
    the naive conversion model, trained on interacted pairs only). `fixed_click`: the chained
    products pass no gradient into the click head (training: the click ranking is learnt from
    clicks, the conversion heads from conversions)."""
    click = F.logsigmoid(logits["click"])
    out = {"click": click}
    chained = click.detach() if fixed_click else click
    for name in CHAINED:
        own = F.logsigmoid(logits[name])
        out[name] = own + chained if conversion == "entire_space" else own
    return out


def binary_cross_entropy(log_p: Tensor, label: Tensor) -> Tensor:
    """Element-wise BCE from log P (stable where P is near 1: log(1 − P) via log1p(−exp))."""
    log_not = torch.log1p(-log_p.exp().clamp(max=1 - 1e-6))
    return -(label * log_p + (1 - label) * log_not)
