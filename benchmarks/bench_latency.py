"""Latency of `related` on a Beauty-sized model (12,101 products): in-process and over HTTP on
loopback with 1 and 32 concurrent clients, with and without knowledge-graph explanations.

    python -m benchmarks.bench_latency [--checkpoint DIR] [--store URI] [--out FILE]

Without --checkpoint the model is the seeded test double (random fused vectors, d=64) over the
real Beauty catalogue: the query layer's cost does not depend on how the vectors were trained.
Without --store the Beauty graph is written to a temporary embedded store. The server runs in a
subprocess (uvicorn, 127.0.0.1) so client and server do not share a GIL.

Targets: in-process p99 <= 5 ms; HTTP p99 <= 20 ms at 32 concurrent clients; zero errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

from fusion.query import Recommender
from kg.readers.beauty import read_beauty
from kg.rejects import RejectLog
from kg.stores import EmbeddedStore, open_store

DATA = Path(os.environ.get("KGREC_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
BEAUTY = DATA / "amazon-beauty-2014"
OUT = Path(__file__).parent / "results" / "latency.json"
IN_PROCESS_QUERIES = 2000
HTTP_QUERIES = 1000  # per configuration, split across the clients
CLIENTS = (1, 32)


def build(checkpoint: Path | None, store_uri: str) -> Recommender:
    if checkpoint is not None:
        return Recommender.load(checkpoint, store_uri)
    from tests.fusion.test_query import TinyModel  # the seeded model double

    store = open_store(store_uri)
    catalogue = read_beauty(BEAUTY, RejectLog())
    return Recommender(TinyModel(catalogue, dim=64), store, name="random-d64")


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    t = torch.tensor(samples_ms, dtype=torch.float64)
    q = torch.quantile(t, torch.tensor([0.5, 0.99], dtype=torch.float64)).tolist()
    return {"p50_ms": round(q[0], 3), "p99_ms": round(q[1], 3), "n": len(samples_ms)}


def in_process(rec: Recommender, ids: list[str], explain: bool) -> dict[str, float]:
    for pid in ids[:50]:  # warm-up
        rec.related(pid, k=10, explain=explain)
    samples = []
    for pid in ids[:IN_PROCESS_QUERIES]:
        start = time.perf_counter()
        rec.related(pid, k=10, explain=explain)
        samples.append((time.perf_counter() - start) * 1000)
    return percentiles(samples)


async def over_http(base: str, ids: list[str], clients: int, explain: bool) -> dict[str, float]:
    samples: list[float] = []
    errors = 0
    queue = iter(ids[:HTTP_QUERIES])
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        for pid in queue:  # shared iterator: a bounded number of requests in total
            start = time.perf_counter()
            try:
                response = await http.get(f"/related/{pid}", params={"explain": explain})
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            samples.append((time.perf_counter() - start) * 1000)
            errors += not ok

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
        for pid in ids[-20:]:  # warm-up
            await http.get(f"/related/{pid}")
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return {**percentiles(samples), "errors": errors, "qps": round(len(samples) / elapsed, 1)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "benchmarks.bench_latency", "--serve", str(port)]
    cmd += ["--store", args.store] + (
        ["--checkpoint", str(args.checkpoint)] if args.checkpoint else []
    )
    proc = subprocess.Popen(cmd, cwd=Path(__file__).parent.parent)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("server did not start in 300 s")


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from fusion.serve import create_app

    uvicorn.run(
        create_app(build(args.checkpoint, args.store)),
        host="127.0.0.1",
        port=args.serve,
        log_level="warning",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--store", help="store URI (default: a temporary embedded Beauty graph)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # server subprocess mode
    args = parser.parse_args()
    torch.set_num_threads(1)  # as `kgrec serve` runs: one request, one thread
    if args.serve:
        serve(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.store is None:
            args.store = f"embedded:{tmp}"
            EmbeddedStore(tmp).write(read_beauty(BEAUTY, RejectLog()))
        rec = build(args.checkpoint, args.store)
        ids = list(rec.product_ids)
        random.Random(0).shuffle(ids)
        result: dict = {
            "model": rec.name,
            "products": len(ids),
            "dim": rec.vectors.shape[1],
            "store": rec.store.uri.split(":")[0],
            "machine": {
                "cpus": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
            "in_process": {
                "related": in_process(rec, ids, explain=False),
                "related_explained": in_process(rec, ids, explain=True),
            },
            "http": {},
        }
        port = free_port()
        server = start_server(args, port)
        try:
            for explain in (False, True):
                for clients in CLIENTS:
                    key = f"related{'_explained' if explain else ''}_{clients}_clients"
                    result["http"][key] = asyncio.run(
                        over_http(f"http://127.0.0.1:{port}", ids, clients, explain)
                    )
        finally:
            server.terminate()
            server.wait(30)
            rec.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
