"""Bulk path of a build into an EMPTY local Neo4j that kgrec manages: the snapshot written as
CSV files, the server stopped, `neo4j-admin database import full` (offline, no transactions),
the server started again. The caller then creates the constraints the Bolt path creates, so
the graph is the one the Bolt path would have written (tests/kg/test_neo4j_import.py).

Any other store (not empty, a remote server, NEO4J_URI, another database) keeps the Bolt path.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kg import server
from kg.schema import KEY, REL_ENDPOINTS, Label, Rel
from kg.stores.base import EDGE_RELS, Progress, Snapshot, Store, StoreError, stage
from kg.stores.neo4j_store import EVENT_PROPS, Neo4jStore

log = logging.getLogger(__name__)

DATABASE = "neo4j"  # the default database: the only one Community serves
IMPORT_HEAP = "1g"  # the importer works mostly off heap
IMPORT_OFF_HEAP = "2g"  # bounded: the default (90% of free memory) is unkind on a shared machine

# Header of each node file (neo4j-admin CSV header format): one ID space per label, the key
# stored as the `id` property, types as the Bolt path stores them.
NODE_HEADERS: dict[Label, list[str]] = {
    Label.PRODUCT: [f"{KEY}:ID({Label.PRODUCT})", "title", "description", "price:double",
                    "in_catalogue:boolean"],
    Label.BRAND: [f"{KEY}:ID({Label.BRAND})"],
    Label.CATEGORY: [f"{KEY}:ID({Label.CATEGORY})", "name"],
    Label.USER: [f"{KEY}:ID({Label.USER})"],
}  # fmt: skip
INF = float("inf")
EVENT_TYPES = {"rating": "double", "ts": "double", "price": "double"}


def local_empty_target(store: Store) -> server.ServerConfig | None:
    """The local server's config when `store` is its default database, running and holding
    nothing (no node, no schema but kgrec's); None when the Bolt path must be used."""
    if not isinstance(store, Neo4jStore) or store.database not in (None, DATABASE):
        return None
    if server.external_settings() is not None:
        return None
    config = server.configured(server.ServerConfig.from_env())
    host, _, port = store.address.partition("://")[2].rpartition(":")
    local = host in ("127.0.0.1", "localhost") and port == str(config.bolt_port)
    if not local or not server.status(config).running:
        return None
    return config if store.is_empty() else None


def import_snapshot(snap: Snapshot, config: server.ServerConfig, progress: Progress | None) -> int:
    """Replace the (empty) database of the local server `config` with `snap`: CSV files, server
    stopped, offline import, server started again (also when the import fails). Relationships
    with an endpoint missing from `snap` are skipped, as the Bolt path skips them. Returns the
    number of relationships imported."""
    work = Path(tempfile.mkdtemp(prefix="import-", dir=config.home))  # private, on the same disk
    try:
        with stage(progress, "import: CSV files"):
            nodes, rels, count = write_csv(snap, work)
        with stage(progress, "import: stop"):
            server.stop(config)
        try:
            with stage(progress, "import: neo4j-admin"):
                _run_import(config, nodes, rels, work / "import.report")
        finally:
            with stage(progress, "import: restart"):
                server.start(config)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return count


def write_csv(snap: Snapshot, work: Path) -> tuple[dict[Label, Path], dict[Rel, Path], int]:
    """One file per label and per relationship type in `work`; strings quoted (so "" stays an
    empty string), None unquoted and empty (no property, as the Bolt path leaves it)."""
    node_rows: dict[Label, Iterable[Iterable[Any]]] = {
        Label.PRODUCT: snap.products,
        Label.BRAND: ((b,) for b in snap.brands),
        Label.CATEGORY: snap.categories,
        Label.USER: ((u,) for u in snap.users),
    }
    nodes = {label: work / f"{label}.csv" for label in Label}
    for label, rows in node_rows.items():
        _write(nodes[label], NODE_HEADERS[label], (",".join(map(_cell, row)) for row in rows))
    # Each key quoted once; a relationship whose endpoint is missing finds no entry.
    quoted = {
        label: {key: _cell(key) for key in keys}
        for label, keys in (
            (Label.PRODUCT, (p.id for p in snap.products)),
            (Label.BRAND, snap.brands),
            (Label.CATEGORY, (c for c, _ in snap.categories)),
            (Label.USER, snap.users),
        )
    }
    rels: dict[Rel, Path] = {}
    count = 0
    for rel in Rel:
        src, dst = REL_ENDPOINTS[rel]
        a, b = quoted[src], quoted[dst]
        header = [f":START_ID({src})", f":END_ID({dst})"]
        if rel == Rel.INTERACTED:
            header += [f"{p}:{EVENT_TYPES[p]}" if p in EVENT_TYPES else p for p in EVENT_PROPS]
            lines: Iterable[str] = (
                f"{a[e.user]},{b[e.product]},{','.join(map(_cell, e[2:]))}"
                for e in snap.interactions
                if e.user in a and e.product in b
            )
        else:
            pairs = snap.edges.get(rel, []) if rel in EDGE_RELS else []
            lines = (f"{a[s]},{b[d]}" for s, d in pairs if s in a and d in b)
        rels[rel] = work / f"{rel}.csv"
        count += _write(rels[rel], header, lines)
    return nodes, rels, count


def _write(path: Path, header: list[str], lines: Iterable[str]) -> int:
    written = 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(",".join(header) + "\n")
        for line in lines:
            out.write(line + "\n")
            written += 1
    return written


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return '"' + value.replace('"', '""') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    number = float(value)
    if number != number or number in (INF, -INF):
        return {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[repr(number)]
    return repr(number)  # round-trips a double exactly


def _run_import(
    config: server.ServerConfig, nodes: dict[Label, Path], rels: dict[Rel, Path], report: Path
) -> None:
    cmd = [
        server.find_java(), f"-Xmx{IMPORT_HEAP}", "-cp", f"{config.lib_dir}/*", server.ADMIN_TOOL,
        "database", "import", "full", DATABASE,
        "--overwrite-destination=true", "--id-type=string", "--multiline-fields=true",
        "--bad-tolerance=0", f"--max-off-heap-memory={IMPORT_OFF_HEAP}",
        f"--report-file={report}",
        *(f"--nodes={label}={path}" for label, path in nodes.items()),
        *(f"--relationships={rel}={path}" for rel, path in rels.items()),
    ]  # fmt: skip
    env = {**os.environ, "NEO4J_HOME": str(config.home), "NEO4J_CONF": str(config.conf_dir)}
    log.info("neo4j-admin database import full %s (%s)", DATABASE, config.home)
    done = subprocess.run(
        cmd, capture_output=True, text=True, env=env, check=False, umask=server.PRIVATE_UMASK
    )
    if done.returncode != 0:
        raise StoreError(
            "neo4j-admin database import failed; the local server was restarted, its database "
            "may be empty or partial (clear it, or build again with --no-bulk):\n"
            + server.tail_text(done.stdout + done.stderr)
        )
