"""Graph encoders over a knowledge-graph `HeteroData` (no dependency on kg/fusion/text_encoder)."""

from gnn.encoders import (
    MetapathEncoder,
    NeighbourEmbedding,
    default_metapaths,
    mean_aggregate,
    propagate,
)

__all__ = [
    "MetapathEncoder",
    "NeighbourEmbedding",
    "default_metapaths",
    "mean_aggregate",
    "propagate",
]
