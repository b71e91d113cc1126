"""Incremental updates: upsert a catalogue delta (new, changed and unchanged products, their
edges, new interactions) into an existing store, then remove listed products.

A delta is read and cleaned exactly as `build` reads a catalogue. Differences from a build:
- references to products outside the delta that the store already holds are not external:
  they are neither stubbed over (which would blank a stored product) nor dropped;
- a product is "changed" when any stored field differs (title, description, brand,
  categories, price, in_catalogue); a changed product's MADE_BY/IN_CATEGORY links are replaced
  by those of its new fields, so a stub that arrives in a delta becomes a catalogue product;
- products listed for removal (`remove`: a file of ids, one per line) are deleted with every
  relationship touching them (users, brands and categories stay); delta rows, edges and
  interactions naming a removed id are ignored, so the remove list always wins.

Safety: every write is an upsert or an idempotent delete, and the diff is taken against the
store each time, so an update killed at any point re-runs to the same graph as an
uninterrupted one (a re-run reports only what was still missing). On the embedded store the
whole update is one transaction under the store's one-writer lock: a killed update changes
nothing, and a second update waits for the first (or fails clearly) rather than diffing against
a graph that is about to change. Removal goes last: the
products it deletes are disjoint from those upserted, and until it runs the store holds the
previous version of every removed product, whole.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from kg.build import DEFAULT_REJECTS, EventTally, TableColumns, read_input, stage
from kg.catalogue import Catalogue
from kg.cleaning import CleaningReport, External, clean
from kg.readers.base import open_text
from kg.rejects import BadInputError, RejectLog
from kg.schema import Product, Rel
from kg.stores import Progress, Store, open_store


@dataclass
class UpdateSummary:
    store: str  # URI of the store updated
    products_new: int  # product nodes the store did not hold (delta rows and new stubs)
    products_changed: int  # stored products with at least one field changed
    products_unchanged: int
    products_removed: int
    unknown_removals: list[str]  # ids listed for removal that the store did not hold
    product_ids_changed: list[str]  # new + changed, sorted: what needs re-encoding
    nodes_added: dict[str, int]  # per label, by the upsert
    relationships_added: dict[str, int]  # per type except INTERACTED, net of replaced links
    interactions_new: int  # events the store did not hold
    events: EventTally  # every interaction row of the delta accounted for
    relationships_removed: dict[str, int]  # per type, with the removed products
    ignored_for_removal: int  # delta products, edges and interactions naming a removed id
    rejected: int
    rejects_path: str
    cleaning: CleaningReport
    seconds: float

    def to_json(self) -> dict:
        return asdict(self)


def update(
    catalogue: str | Path | None,
    interactions: str | Path | None = None,
    remove: str | Path | None = None,
    fmt: str = "auto",
    store_uri: str | None = None,
    external: External = "stub",
    strict: bool = False,
    rejects_path: str | Path = DEFAULT_REJECTS,
    progress: Progress | None = None,
    columns: TableColumns | None = None,
) -> UpdateSummary:
    """Apply a delta catalogue (and/or a removal list) to a store; see the module docstring.

    Raises `BadInputError` (strict mode, nothing readable, nothing to do), `StoreError`,
    `OSError` (an unreadable removal list).
    """
    start = time.perf_counter()
    log = RejectLog(strict=strict)
    if catalogue is not None:
        delta: Catalogue = read_input(
            catalogue, interactions, fmt, log, rejects_path, progress, columns
        )
    elif remove is not None and interactions is None:
        delta = Catalogue()
    else:
        raise BadInputError(
            "nothing to update: give a catalogue delta (interactions come with one) "
            "and/or a removal list"
        )
    removals = read_ids(remove) if remove is not None else []
    with open_store(store_uri) as store:
        summary = apply_delta(store, delta, removals, external, log, rejects_path, progress)
    return replace(summary, seconds=round(time.perf_counter() - start, 2))  # reading included


def apply_delta(
    store: Store,
    delta: Catalogue,
    removals: list[str] | None = None,
    external: External = "stub",
    log: RejectLog | None = None,
    rejects_path: str | Path = DEFAULT_REJECTS,
    progress: Progress | None = None,
) -> UpdateSummary:
    """`update` after reading: apply an in-memory `delta` (read, not yet cleaned; changed in
    place) and `removals` to an open store. `log` holds the reading's rejects, written to
    `rejects_path` before the store is touched."""
    start = time.perf_counter()
    log = log if log is not None else RejectLog()
    removals = removals or []
    parsed = len(delta.interactions)
    ignored = _drop_removed(delta, set(removals))
    rejects = log.write(rejects_path)  # before any write, as in build
    # One unit of work (for the embedded store, one transaction under its writer lock): what
    # the delta is diffed against is what it changes, and a killed update changes nothing.
    with store.transaction():
        with stage(progress, "clean"):
            report, stored = _clean_against(store, delta, external, removals)
        new = sorted(pid for pid in delta.products if pid not in stored)
        changed = sorted(
            pid
            for pid, product in delta.products.items()
            if pid in stored and _fields(product) != _fields(stored[pid])
        )
        before = store.counts()
        # Neo4j: a crash between these two steps leaves the changed products unlinked, so a
        # re-run sees them as changed again and links them.
        store.unlink_products(changed, (Rel.MADE_BY, Rel.IN_CATEGORY))
        upserts = {pid: delta.products[pid] for pid in (*new, *changed)}
        store.write(Catalogue(upserts, delta.categories, delta.edges, delta.interactions), progress)
        upserted = store.counts()
        removed = store.remove_products(pid for pid in removals if pid in stored)
        after = store.counts()
    added = _diff(upserted, before)
    return UpdateSummary(
        store=store.uri,
        products_new=len(new),
        products_changed=len(changed),
        products_unchanged=len(delta.products) - len(new) - len(changed),
        products_removed=removed,
        unknown_removals=[pid for pid in removals if pid not in stored],
        product_ids_changed=sorted(upserts),
        nodes_added=added["nodes"],
        relationships_added={
            rel: n for rel, n in added["relationships"].items() if rel != Rel.INTERACTED
        },
        interactions_new=added["relationships"][Rel.INTERACTED],
        events=EventTally.count(parsed, delta, log, report.duplicate_interactions),
        relationships_removed=_diff(upserted, after)["relationships"],
        ignored_for_removal=ignored,
        rejected=len(log),
        rejects_path=str(rejects),
        cleaning=report,
        seconds=round(time.perf_counter() - start, 2),
    )


def read_ids(path: str | Path) -> list[str]:
    """Product ids, one per line (blank lines skipped, repeats once); `.gz` is fine."""
    with open_text(path) as lines:
        return list(dict.fromkeys(s for line in lines if (s := line.strip())))


def _drop_removed(delta: Catalogue, removals: set[str]) -> int:
    """Forget every delta row naming a product to remove; how many there were."""
    n = len(delta.products) + len(delta.edges) + len(delta.interactions)
    delta.products = {pid: p for pid, p in delta.products.items() if pid not in removals}
    delta.edges = [e for e in delta.edges if e.src not in removals and e.dst not in removals]
    delta.interactions = [i for i in delta.interactions if i.product not in removals]
    return n - len(delta.products) - len(delta.edges) - len(delta.interactions)


def _clean_against(
    store: Store, delta: Catalogue, external: External, removals: list[str]
) -> tuple[CleaningReport, dict[str, Product]]:
    """Clean the delta as build does, with the stored products it references counted as known
    rather than external. Returns the report and the stored versions of the delta's products,
    its references and the removals (by id; absent ids are not stored)."""
    referenced = {pid for e in delta.edges for pid in (e.src, e.dst)}
    referenced |= {i.product for i in delta.interactions}
    referenced -= delta.products.keys()
    stored = store.get_products([*delta.products, *referenced, *removals])
    # Stand-ins that make cleaning see stored products as present; taken out again so the
    # write leaves them as they are, and out of the empty-title count (they are not delta rows).
    known = {
        pid: Product(pid, in_catalogue=stored[pid].in_catalogue)
        for pid in referenced & stored.keys()
    }
    delta.products.update(known)
    report = clean(delta, external)
    for pid, product in known.items():
        del delta.products[pid]
        report.empty_titles -= product.in_catalogue
    return report, stored


def _fields(p: Product) -> tuple:
    # Stores return categories sorted and prices as floats.
    price = None if p.price is None else float(p.price)
    return (p.title, p.description, p.brand, sorted(p.categories), price, p.in_catalogue)


def _diff(a: dict[str, dict[str, int]], b: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """a - b per label and per relationship type (`Store.counts()` shape)."""
    return {kind: {k: n - b[kind][k] for k, n in a[kind].items()} for kind in a}
