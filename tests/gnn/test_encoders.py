"""The metapath encoder: aggregation (in edge chunks, into any output), metapaths over the
Beauty schema, inductiveness."""

from __future__ import annotations

import torch

from gnn import (
    MetapathEncoder,
    NeighbourEmbedding,
    default_metapaths,
    encoders,
    mean_aggregate,
    propagate,
)

AB = ("product", "also_bought", "product")
REV_AB = ("product", "rev_also_bought", "product")
MADE_BY = ("product", "made_by", "brand")
REV_MADE_BY = ("brand", "rev_made_by", "product")
SUB = ("category", "subcategory_of", "category")


def test_mean_aggregate_averages_in_neighbours_and_zeros_the_rest():
    x = torch.tensor([[1.0], [3.0], [5.0]])
    edge_index = torch.tensor([[0, 1, 2], [2, 2, 0]])
    out = mean_aggregate(x, edge_index, 3)
    assert out.squeeze(1).tolist() == [5.0, 0.0, 2.0]


def test_default_metapaths_cover_every_relation_into_products():
    edge_types = [
        AB,
        REV_AB,
        MADE_BY,
        REV_MADE_BY,
        SUB,
        ("category", "rev_subcategory_of", "category"),
    ]
    paths = default_metapaths(edge_types, "product")
    assert paths == [(AB,), (REV_AB,), (MADE_BY, REV_MADE_BY)]


def test_propagate_on_beauty_has_one_block_per_metapath(beauty):
    edges = {et: beauty[et].edge_index for et in beauty.edge_types}
    num_nodes = {t: beauty[t].num_nodes for t in beauty.node_types}
    paths = default_metapaths(list(edges), "product")
    x = torch.randn(num_nodes["product"], 8, generator=torch.Generator().manual_seed(0))
    feats = propagate(x, edges, num_nodes, paths)
    assert feats.shape == (num_nodes["product"], 8 * (1 + len(paths)))
    assert torch.equal(feats[:, :8], x)  # the node's own features come first
    # every relation into products is used: 3 product relations x 2 directions, plus the
    # round trips through brand, category and user
    assert len(paths) == 6 + 3


def test_propagate_in_edge_chunks_into_float16_matches_one_pass(beauty, monkeypatch):
    """Gathering a few edges at a time is exact; a float16 output only rounds the float32 one."""
    edges = {et: beauty[et].edge_index for et in beauty.edge_types}
    num_nodes = {t: beauty[t].num_nodes for t in beauty.node_types}
    paths = default_metapaths(list(edges), "product")
    x = torch.nn.functional.normalize(torch.randn(num_nodes["product"], 8), dim=1)
    whole = propagate(x, edges, num_nodes, paths)
    monkeypatch.setattr(encoders, "EDGE_CHUNK_BYTES", 1000 * 8 * 4)  # 1,000 edges per gather
    reports: list[tuple[int, int]] = []
    out = torch.empty(whole.shape, dtype=torch.float16)
    half = propagate(x, edges, num_nodes, paths, out=out, progress=lambda *r: reports.append(r))
    assert half is out and reports[-1] == (len(paths), len(paths))
    assert torch.allclose(propagate(x, edges, num_nodes, paths), whole, atol=1e-6)
    assert torch.allclose(half.float(), whole, atol=1e-3)


def test_encoder_is_inductive_for_a_product_without_edges():
    torch.manual_seed(0)
    x = torch.randn(4, 6)
    num_nodes = {"product": 4, "brand": 1}
    paths = default_metapaths([AB, REV_AB, MADE_BY, REV_MADE_BY], "product")
    encoder = MetapathEncoder(len(paths), 6, 16).eval()
    isolated = {
        AB: torch.tensor([[0, 1], [1, 2]]),
        REV_AB: torch.tensor([[1, 2], [0, 1]]),
        MADE_BY: torch.tensor([[0], [0]]),
        REV_MADE_BY: torch.tensor([[0], [0]]),
    }
    linked = {
        **isolated,
        AB: torch.tensor([[0, 1, 3], [1, 2, 0]]),
        REV_AB: torch.tensor([[1, 2, 0], [0, 1, 3]]),
    }
    h_isolated = encoder(propagate(x, isolated, num_nodes, paths))
    h_linked = encoder(propagate(x, linked, num_nodes, paths))
    assert torch.isfinite(h_isolated[3]).all()  # embedded from its own features alone
    assert not torch.allclose(h_isolated[3], h_linked[3])  # and it uses new neighbours
    x2 = x.clone()
    x2[3] += 1
    assert not torch.allclose(encoder(propagate(x2, isolated, num_nodes, paths))[3], h_isolated[3])


def test_neighbour_embedding_means_links_and_accepts_unsorted_edges():
    emb = NeighbourEmbedding(3, 4)
    w = emb.bag.weight
    out = emb(torch.tensor([[2, 0, 2], [1, 0, 2]]), 4)
    assert torch.allclose(out[0], w[0])
    assert torch.allclose(out[2], (w[1] + w[2]) / 2)
    assert torch.equal(out[1], torch.zeros(4)) and torch.equal(out[3], torch.zeros(4))
