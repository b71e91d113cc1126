"""`kgrec serve` as a real process on a real (tiny) checkpoint: bound to every interface it
warns and, given a key, refuses requests without it; a store change shows as stale in `/health`
until SIGHUP reloads the model."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx

from kg.catalogue import Catalogue
from kg.stores import EmbeddedStore

KEY = "test-key-0123456789"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(check, timeout: float, what: str, process: subprocess.Popen, log: Path) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"kgrec serve ended ({process.returncode}):\n{log.read_text()}")
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()}")


def test_serve_warns_guards_and_reloads_on_sighup(recommend_checkpoint, tmp_path: Path):
    graph, model = (tmp_path / p.name for p in recommend_checkpoint)
    for src, dst in zip(recommend_checkpoint, (graph, model), strict=True):
        shutil.copytree(src, dst)
    port = _free_port()
    command = [
        sys.executable, "-c", "from fusion.cli import main; main()",
        "serve", "--host", "0.0.0.0", "--port", str(port), "--checkpoint", str(model),
        "--store", f"embedded:{graph}", "--access-log", "off",
    ]  # fmt: skip
    env = {**os.environ, "KGREC_API_KEY": KEY}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    keyed = {"X-API-Key": KEY}
    try:
        live = lambda: httpx.get(f"{base}/health/live").status_code == 200  # noqa: E731
        _wait_for(live, 300, "the server", process, log)
        assert "reachable from other machines" in log.read_text()
        assert httpx.get(f"{base}/health").status_code == 401
        assert httpx.get(f"{base}/health", headers=keyed).json()["status"] == "ok"

        store = EmbeddedStore(graph)  # another writer, as `kgrec update` is
        pid = next(iter(store.snapshot().products)).id
        twin = store.get_products([pid])[pid]
        store.write(Catalogue(products={"NEW-HUP": replace(twin, id="NEW-HUP")}))
        assert httpx.get(f"{base}/health", headers=keyed).json()["status"] == "stale"
        # The store is read live (SQLite, like Neo4j): the new product is answered at once, placed
        # by its text; the model learns of it only at the reload.
        assert httpx.get(f"{base}/related/NEW-HUP", headers=keyed).status_code == 200

        process.send_signal(signal.SIGHUP)
        _wait_for(
            lambda: httpx.get(f"{base}/health", headers=keyed).json()["status"] == "ok",
            300,
            "the reload",
            process,
            log,
        )
        assert httpx.get(f"{base}/related/NEW-HUP", headers=keyed).status_code == 200
        assert process.poll() is None  # SIGHUP reloaded, it did not end the server
    finally:
        process.terminate()
        process.wait(60)
