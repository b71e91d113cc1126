"""The inputs of every run: the store's graph as `HeteroData`, the products' text vectors and the
task's leakage-free split."""

from __future__ import annotations

from torch import Tensor
from torch_geometric.data import HeteroData

from fusion.data.replay import Trained, trained_keys
from fusion.data.splits import Split, recommend_split, related_split
from kg.export import to_heterodata
from kg.stores import Store, open_store
from kgrec.errors import InvalidArgumentError, MissingDataError
from text_encoder import TextEncoder, default_cache_dir, encode_products


def load_graph(store_uri: str | None) -> HeteroData:
    with open_store(store_uri) as store:
        return graph_of(store)


def graph_of(store: Store) -> HeteroData:
    """The store's graph as HeteroData; an empty store is an error worth a clear message."""
    data = to_heterodata(store)
    if data["product"].num_nodes == 0:
        raise MissingDataError("the store holds no products: run `kgrec build` first")
    return data


def text_vectors(
    data: HeteroData, text_model: str | None = None, device: str = "auto", progress: bool = True
) -> tuple[Tensor, str]:
    """Every product's text vector (through the on-disk cache) and the text model's id."""
    encoder = TextEncoder.from_pretrained(text_model, device=device)
    product = data["product"]
    vectors, _ = encode_products(
        encoder, product.node_id, product.text_fields, default_cache_dir(), progress=progress
    )
    return vectors.vectors, encoder.model_id


def make_split(data: HeteroData, task: str, relation: str, trained: Trained | None = None) -> Split:
    """The task's split of `data`. `trained`: the pairs a checkpoint was trained on, which a
    related-items split never holds out (the graph may have grown since; recommendation splits
    are by time, so what a model trained on stays training)."""
    if task == "recommend":
        return recommend_split(data)
    if task == "related":
        if ("product", relation, "product") not in data.edge_types:
            raise InvalidArgumentError(f"unknown relation {relation!r}")
        if data["product", relation, "product"].num_edges == 0:
            raise MissingDataError(f"the graph has no {relation!r} edges to learn or evaluate")
        seen = None if trained is None else trained_keys(trained, data, "product")
        return related_split(data, relation, trained=seen)
    raise InvalidArgumentError(f"task must be 'related' or 'recommend', got {task!r}")
