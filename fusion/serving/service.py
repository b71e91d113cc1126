"""The model a server answers from: swapped whole by a reload, closed once no request uses it,
and what readiness reports about it (store reachable, model age, stale since the last update).

A server never sees `kgrec update` or a retrain: it compares the store's version marker and the
checkpoint directory with what it loaded, and says so in `/health` until it is reloaded
(`POST /admin/reload`, or SIGHUP).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from fastapi.concurrency import run_in_threadpool
from neo4j.exceptions import DriverError, TransientError
from pydantic import BaseModel

from fusion.serving.recommender import Recommender
from kg.stores import StoreError

log = logging.getLogger(__name__)

# What a store that does not answer raises: kg's own error, the driver's (connection refused,
# session expired) and the server's "try again" (database unavailable, leader switch).
STORE_DOWN = (StoreError, DriverError, TransientError)


class Health(BaseModel):
    status: str  # "ok", "stale" (answers from an older graph or model) or "store unavailable"
    model: str
    products: int
    store: str
    store_reachable: bool
    loaded_at: datetime
    model_saved_at: datetime | None  # when the checkpoint was written (None: not from disk)
    model_age_seconds: float | None
    store_changed: bool | None  # since the model was loaded; None: the store cannot tell
    model_changed: bool | None  # the checkpoint on disk was replaced since loading
    stale: bool


class Service:
    """The current recommender, built (and rebuilt on reload) by `loader`; `checkpoint` is the
    directory it comes from, for the model's age and whether it was replaced."""

    def __init__(
        self,
        rec: Recommender,
        loader: Callable[[], Recommender] | None = None,
        checkpoint: str | Path | None = None,
    ) -> None:
        self.loader = loader
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self._in_flight: Counter[int] = Counter()  # by id(recommender)
        self._retired: dict[int, Recommender] = {}
        self._reloading = asyncio.Lock()
        self._install(rec)

    def _install(self, rec: Recommender) -> None:
        self.rec = rec
        self.loaded_at = datetime.now(UTC)
        self._store_version = _version_or_none(rec)
        self._checkpoint_stamp = _stamp(self.checkpoint)

    @asynccontextmanager
    async def using(self) -> AsyncIterator[Recommender]:
        """The current recommender, kept open until the caller is done even if a reload
        replaces it meanwhile. Counted on the event loop, where reloads swap."""
        rec = self.rec
        self._in_flight[id(rec)] += 1
        try:
            yield rec
        finally:
            self._in_flight[id(rec)] -= 1
            if not self._in_flight[id(rec)]:
                del self._in_flight[id(rec)]
                retired = self._retired.pop(id(rec), None)
                if retired is not None:
                    retired.close()

    async def reload(self) -> None:
        """Load the checkpoint and the store's graph afresh (off the event loop), then swap;
        the old recommender answers until then and is closed after its last request."""
        if self.loader is None:
            raise RuntimeError("this server was given a loaded model: it cannot reload one")
        async with self._reloading:
            fresh = await run_in_threadpool(self.loader)
            old = self.rec
            self._install(fresh)
            log.info("reloaded the model: %s products", len(fresh.product_ids))
            if id(old) in self._in_flight:
                self._retired[id(old)] = old
            else:
                old.close()

    def close(self) -> None:
        self.rec.close()
        for rec in self._retired.values():
            rec.close()
        self._retired.clear()

    def health(self) -> Health:
        """Readiness: asks the store for its version (a Neo4j round trip), so call it off the
        event loop."""
        rec = self.rec
        try:
            version = rec.store.version()
            reachable = True
        except STORE_DOWN as exc:
            log.warning("graph store %s does not answer: %s", rec.store.uri, exc)
            version, reachable = None, False
        store_changed = None
        if reachable and version is not None and self._store_version is not None:
            store_changed = version != self._store_version
        model_changed = None
        saved_at = age = None
        if self.checkpoint is not None:
            now = _stamp(self.checkpoint)
            model_changed = now != self._checkpoint_stamp
            if self._checkpoint_stamp is not None:
                saved = self._checkpoint_stamp[1] / 1e9
                saved_at, age = datetime.fromtimestamp(saved, UTC), time.time() - saved
        stale = bool(store_changed or model_changed)
        status = "store unavailable" if not reachable else "stale" if stale else "ok"
        return Health(
            status=status,
            model=rec.name,
            products=len(rec.product_ids),
            store=rec.store.uri,
            store_reachable=reachable,
            loaded_at=self.loaded_at,
            model_saved_at=saved_at,
            model_age_seconds=age,
            store_changed=store_changed,
            model_changed=model_changed,
            stale=stale,
        )


def _version_or_none(rec: Recommender) -> str | None:
    try:
        return rec.store.version()
    except STORE_DOWN:
        return None


def _stamp(checkpoint: Path | None) -> tuple[int, int] | None:
    """(inode, mtime) of the checkpoint directory: a save swaps in a new directory."""
    if checkpoint is None:
        return None
    try:
        info = os.stat(checkpoint)
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns
