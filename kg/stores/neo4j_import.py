"""Bulk path of a build into an EMPTY local Neo4j that kgrec manages: the graph's columns
(`GraphColumns`) written as CSV files, the server stopped, `neo4j-admin database import full`
(offline, no transactions), the server started again. The caller then creates the constraints
the Bolt path creates, so the graph is the one the Bolt path would have written
(tests/kg/test_neo4j_import.py).

Any other store (not empty, a remote server, NEO4J_URI, another database) keeps the Bolt path.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from kg import server
from kg.schema import KEY, REL_ENDPOINTS, Label, Rel
from kg.stores.base import GraphColumns, Progress, Store, StoreError, stage
from kg.stores.neo4j_store import EVENT_PROPS, Neo4jStore

log = logging.getLogger(__name__)

DATABASE = "neo4j"  # the default database: the only one Community serves
IMPORT_HEAP = "1g"  # the importer works mostly off heap
IMPORT_OFF_HEAP = "2g"  # bounded: the default (90% of free memory) is unkind on a shared machine

# Node files: an integer ID per label's own ID space (the row's index in `GraphColumns.ids`,
# not stored), the key as the `id` property, the properties typed as the Bolt path stores them.
NODE_PROPERTIES: dict[Label, list[str]] = {
    Label.PRODUCT: [KEY, "title", "description", "price:double", "in_catalogue:boolean"],
    Label.BRAND: [KEY],
    Label.CATEGORY: [KEY, "name"],
    Label.USER: [KEY],
}
EVENT_TYPES = {"rating": "double", "ts": "double", "price": "double"}


def _local_config(address: str | None) -> server.ServerConfig | None:
    """The config of the local server kgrec manages when `address` (a URI without credentials;
    None: the default store) is that server, else None."""
    if server.external_settings() is not None:
        return None
    config = server.configured(server.ServerConfig.from_env())
    if address is None:
        return config
    host, _, port = address.partition("://")[2].rpartition(":")
    local = host in ("127.0.0.1", "localhost") and port == str(config.bolt_port)
    return config if local else None


def local_empty_target(store: Store) -> server.ServerConfig | None:
    """The local server's config when `store` is its default database, running and holding
    nothing (no node, no schema but kgrec's); None when the Bolt path must be used."""
    if not isinstance(store, Neo4jStore) or store.database not in (None, DATABASE):
        return None
    config = _local_config(store.address)
    if config is None or not server.status(config).running:
        return None
    return config if store.is_empty() else None


def cut_off_target(address: str | None) -> server.ServerConfig | None:
    """The local server's config when an offline import into it was cut off (its marker left
    behind, its processes gone): the database may be partial, and only another import can be
    trusted to replace it. Raises `StoreError` while that import still runs."""
    config = _local_config(address)
    if config is None or not config.unfinished_import.exists():
        return None
    try:
        pids = json.loads(config.unfinished_import.read_text(encoding="utf-8"))["pids"]
    except (OSError, ValueError, KeyError):
        pids = []  # unreadable: no process to wait for
    running = [pid for pid in pids if _alive(pid)]
    if running:
        raise StoreError(
            f"an offline import into the local Neo4j ({config.home}) is running "
            f"(pid {', '.join(map(str, running))}): wait for it to end, then build again"
        )
    return config


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def import_columns(
    cols: GraphColumns, config: server.ServerConfig, progress: Progress | None
) -> int:
    """Replace the (empty, or cut-off import's) database of the local server `config` with the
    graph `cols`: CSV files, server stopped, offline import, server started again (also when
    the import fails). From the stop until the import succeeds `config.unfinished_import`
    names this process and the importer's, so a build re-run after a kill imports again
    (`cut_off_target`). Returns the number of relationships imported."""
    work = Path(tempfile.mkdtemp(prefix="import-", dir=config.home))  # private, on the same disk
    try:
        with stage(progress, "import: CSV files"):
            nodes, rels, count = write_csv(cols, work)
        _mark_unfinished(config, [os.getpid()])
        with stage(progress, "import: stop"):
            server.stop(config)
        try:
            with stage(progress, "import: neo4j-admin"):
                _run_import(config, nodes, rels, work / "import.report")
            config.unfinished_import.unlink()
        finally:
            with stage(progress, "import: restart"):
                server.start(config)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return count


def write_csv(cols: GraphColumns, work: Path) -> tuple[dict[Label, Path], dict[Rel, Path], int]:
    """One file per label and per relationship type in `work`, written by pyarrow: strings
    always quoted (so "" stays an empty string), a missing value (None, NaN) unquoted and empty
    (no property, as the Bolt path leaves it), doubles in their shortest exact form."""
    products = cols.products
    node_columns: dict[Label, list[Any]] = {
        Label.PRODUCT: [
            cols.ids[Label.PRODUCT],
            [p.title for p in products],
            [p.description for p in products],
            _doubles(np.array([p.price for p in products], dtype=np.float64)),
            [p.in_catalogue for p in products],
        ],
        Label.BRAND: [cols.ids[Label.BRAND]],
        Label.CATEGORY: [cols.ids[Label.CATEGORY], cols.category_names],
        Label.USER: [cols.ids[Label.USER]],
    }
    nodes = {label: work / f"{label}.csv" for label in Label}
    for label, columns in node_columns.items():
        ids = np.arange(len(cols.ids[label]), dtype=np.int64)
        header = [f":ID({label})", *NODE_PROPERTIES[label]]
        _write(nodes[label], header, [ids, *columns])
    rels: dict[Rel, Path] = {}
    count = 0
    for rel in Rel:
        src_label, dst_label = REL_ENDPOINTS[rel]
        src, dst = cols.edges[rel]
        header = [f":START_ID({src_label})", f":END_ID({dst_label})"]
        columns: list[Any] = [src, dst]
        if rel == Rel.INTERACTED:
            header += [f"{p}:{EVENT_TYPES[p]}" if p in EVENT_TYPES else p for p in EVENT_PROPS]
            columns += [
                _doubles(cols.events[p]) if p in EVENT_TYPES else cols.events[p]
                for p in EVENT_PROPS
            ]
        rels[rel] = work / f"{rel}.csv"
        _write(rels[rel], header, columns)
        count += len(src)
    return nodes, rels, count


def _doubles(values: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.float64(), mask=np.isnan(values))


def _write(path: Path, header: list[str], columns: list[Any]) -> None:
    arrays = [c if isinstance(c, pa.Array) else pa.array(c) for c in columns]
    table = pa.table(arrays, names=[str(i) for i in range(len(arrays))])
    with open(path, "wb") as out:
        out.write((",".join(header) + "\n").encode("utf-8"))
        pa_csv.write_csv(table, out, pa_csv.WriteOptions(include_header=False))


def _run_import(
    config: server.ServerConfig, nodes: dict[Label, Path], rels: dict[Rel, Path], report: Path
) -> None:
    cmd = [
        server.find_java(), f"-Xmx{IMPORT_HEAP}", "-cp", f"{config.lib_dir}/*", server.ADMIN_TOOL,
        "database", "import", "full", DATABASE,
        "--overwrite-destination=true", "--id-type=integer", "--multiline-fields=true",
        "--bad-tolerance=0", f"--max-off-heap-memory={IMPORT_OFF_HEAP}",
        f"--report-file={report}",
        *(f"--nodes={label}={path}" for label, path in nodes.items()),
        *(f"--relationships={rel}={path}" for rel, path in rels.items()),
    ]  # fmt: skip
    env = {**os.environ, "NEO4J_HOME": str(config.home), "NEO4J_CONF": str(config.conf_dir)}
    log.info("neo4j-admin database import full %s (%s)", DATABASE, config.home)
    importer = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        umask=server.PRIVATE_UMASK,
    )
    _mark_unfinished(config, [os.getpid(), importer.pid])
    output, _ = importer.communicate()
    if importer.returncode != 0:
        raise StoreError(
            "neo4j-admin database import failed; the local server was restarted, its database "
            "may be empty or partial (build again: the next build imports over it):\n"
            + server.tail_text(output)
        )


def _mark_unfinished(config: server.ServerConfig, pids: list[int]) -> None:
    marker = config.unfinished_import
    temporary = marker.with_suffix(".tmp")
    temporary.write_text(json.dumps({"pids": pids, "since": time.time()}), encoding="utf-8")
    os.replace(temporary, marker)  # whole or absent, never half-written
