"""The model card (`README.md`) generated into every checkpoint: the data it was trained on,
the text model, the task, the metrics and the configuration, with the date and kgrec version."""

from __future__ import annotations

import json
from typing import Any

from torch_geometric.data import HeteroData


def graph_counts(graph: HeteroData) -> dict[str, Any]:
    """Nodes per type and edges per relation (reverse edge types left out)."""
    return {
        "nodes": {t: int(graph[t].num_nodes) for t in graph.node_types},
        "edges": {
            et[1]: int(graph[et].num_edges)
            for et in graph.edge_types
            if not et[1].startswith("rev_")
        },
    }


def model_card(name: str, config: dict[str, Any], meta: dict[str, Any]) -> str:
    """The checkpoint's README.md: what it was trained on, how, and how well."""
    metrics, data = meta["metrics"], meta["data"]
    train = metrics.get("train", {})
    relation = metrics.get("relation") if config["task"] == "related" else None
    task = config["task"] + (f" / {relation}" if relation else "")
    nodes, edges = data["nodes"], data["edges"]
    rows = [
        ("task", task),
        ("data", f"store `{data['store'] or 'not recorded'}`"),
        ("products / users", f"{nodes.get('product', 0):,} / {nodes.get('user', 0):,}"),
        ("edges", ", ".join(f"{rel} {n:,}" for rel, n in sorted(edges.items())) or "none"),
        ("text model", f"`{meta['text_model'] or 'not recorded'}`"),
        ("trained", f"{meta['created']} with kgrec {meta['kgrec_version']}"),
    ]
    if train:
        rows.append(
            (
                "best validation",
                f"{train['metric']} {train['best']:.4f} at epoch {train['best_epoch']} of "
                f"{train['epochs']} ({train['stopped_by']}, {train['seconds']:.0f} s)",
            )
        )
    if "warm_start" in metrics:
        rows.append(("warm start from", f"`{metrics['warm_start']}`"))
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    return (
        f"# kgrec model `{name}`\n\nA fused text + graph model (`fusion.model.fused`), "
        "generated with the checkpoint.\n\n| | |\n| --- | --- |\n"
        f"{table}\n\n## Metrics\n\n```json\n{json.dumps(metrics, indent=2)}\n```\n\n"
        f"## Configuration\n\n```json\n{json.dumps(config, indent=2)}\n```\n\n"
        "Load it with `fusion.serving.recommender.Recommender.load(DIR, store)`, evaluate it "
        "with `kgrec evaluate --checkpoint DIR`.\n"
    )
