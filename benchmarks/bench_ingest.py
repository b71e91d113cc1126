"""Ingest benchmark on Amazon Beauty: relationships/s into Neo4j, batched vs one query per row,
and the time to export the whole graph to HeteroData. Writes benchmarks/results/ingest.json.

    python benchmarks/bench_ingest.py --store bolt://127.0.0.1:7687   # WIPES that database
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from kg.cleaning import clean
from kg.export import to_heterodata
from kg.readers import read_catalogue
from kg.rejects import RejectLog
from kg.schema import Label, Rel
from kg.stores import Neo4jStore, Snapshot, open_store
from kg.stores.neo4j_store import rel_write_query

DATA = Path(os.environ.get("KGREC_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
BEAUTY = DATA / "amazon-beauty-2014"
RESULTS = Path(__file__).parent / "results" / "ingest.json"
PER_ROW_SAMPLE = 2_000


def timed_write(store: Neo4jStore, snap: Snapshot) -> dict[str, float]:
    """Seconds per write step (a step = one label or relationship type)."""
    started: dict[str, float] = {}
    seconds: dict[str, float] = {}

    def progress(step: str, done: int, total: int) -> None:
        now = time.perf_counter()
        started.setdefault(step, now)
        if done == total:
            seconds[step] = now - started[step]

    store.write_snapshot(snap, progress)
    return seconds


def rel_rate(seconds: dict[str, float], counts: dict[str, int]) -> float:
    rels = [rel for rel in Rel if rel in seconds]
    return sum(counts[rel] for rel in rels) / sum(seconds[rel] for rel in rels)


def per_row_rate(store: Neo4jStore, rows: list[tuple[str, str]]) -> float:
    """Re-create `rows` (deleted first) with one auto-committed query per row."""
    with store.session() as session:
        session.run(
            "UNWIND $rows AS row MATCH (:Product {id: row[0]})-[r:ALSO_BOUGHT]->"
            "(:Product {id: row[1]}) DELETE r",
            rows=rows,
        ).consume()
        query = rel_write_query(Rel.ALSO_BOUGHT)
        start = time.perf_counter()
        for row in rows:
            session.run(query, rows=[row]).consume()
        return len(rows) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="bolt://… of a disposable database")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    load_at_start = os.getloadavg()[0]  # the machine is shared: record how busy it was
    start = time.perf_counter()
    cat = read_catalogue(BEAUTY, log=RejectLog())
    clean(cat, "drop")  # the in-catalogue graph: 12,101 products, ~400k product edges
    snap = Snapshot.from_catalogue(cat)
    prepare_s = time.perf_counter() - start

    store = open_store(args.store)
    assert isinstance(store, Neo4jStore), "the benchmark measures Neo4j"
    with store:
        store.clear()
        fresh = timed_write(store, snap)
        counts = store.counts()
        rerun = timed_write(store, snap)  # every MERGE now matches an existing relationship
        assert store.counts() == counts, "a re-run changed the counts"
        per_row = per_row_rate(store, snap.edges[Rel.ALSO_BOUGHT][:PER_ROW_SAMPLE])
        start = time.perf_counter()
        exported = store.snapshot()
        snapshot_s = time.perf_counter() - start
        data = to_heterodata(exported)
        export_s = time.perf_counter() - start

    batched = rel_rate(fresh, counts["relationships"])
    result = {
        "dataset": "amazon-beauty-2014 (external references dropped)",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m_at_start": round(load_at_start, 2),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "neo4j_driver": version("neo4j"),
            "neo4j_rust_ext": _version("neo4j-rust-ext"),
        },
        "graph": counts,
        "read_and_clean_s": round(prepare_s, 2),
        "write_s": {step: round(s, 2) for step, s in fresh.items()},
        "write_total_s": round(sum(fresh.values()), 2),
        "relationships_per_s": {
            "batched_fresh": round(batched),
            "batched_rerun": round(rel_rate(rerun, counts["relationships"])),
            "per_row": round(per_row),
            "per_row_sample": PER_ROW_SAMPLE,
            "speedup": round(batched / per_row, 1),
        },
        "export_s": {"snapshot": round(snapshot_s, 2), "total": round(export_s, 2)},
        "heterodata": {
            "products": data[Label.PRODUCT.lower()].num_nodes,
            "edges": sum(data[et].num_edges for et in data.edge_types) // 2,
        },
        "targets": {
            "relationships_per_s": 50_000,
            "speedup_vs_per_row": 100,
            "export_s": 10,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
