"""`/search` under a burst: N concurrent clients against a real `kgrec serve` process; latency
percentiles, status counts and the server's resident memory before, at the peak and after.
Adds the run under `--label` to benchmarks/results/search_cap.json.

    python benchmarks/bench_search_cap.py --checkpoint DIR --store embedded:PATH [--clients 16]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

RESULTS = Path(__file__).parent / "results" / "search_cap.json"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=20, help="per client")
    parser.add_argument("--label", default="capped", help="name of this run in the JSON")
    args = parser.parse_args()
    port = _free_port()
    command = [
        sys.executable, "-c", "from fusion.cli import main; main()", "serve", "--port", str(port),
        "--checkpoint", args.checkpoint, "--store", args.store, "--access-log", "off",
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
            time.sleep(0.5)
        httpx.get(f"{base}/search", params={"q": "warm up"}, timeout=60)
        before = _rss_mb(server.pid)
        peak, done = before, threading.Event()

        def watch() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _rss_mb(server.pid))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()

        def client(n: int) -> list[tuple[int, float]]:
            out = []
            with httpx.Client(timeout=120) as http:
                for i in range(args.requests):
                    start = time.perf_counter()
                    text = f"long lasting lipstick shade {n} {i} " * 8
                    code = http.get(f"{base}/search", params={"q": text}).status_code
                    out.append((code, time.perf_counter() - start))
            return out

        start = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            rows = [r for part in pool.map(client, range(args.clients)) for r in part]
        seconds = time.perf_counter() - start
        done.set()
        watcher.join()
        time.sleep(2)
        after = _rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(60)
    ok = [s for code, s in rows if code == 200]
    codes: dict[str, int] = {}
    for code, _ in rows:
        codes[str(code)] = codes.get(str(code), 0) + 1
    result = {
        "clients": args.clients,
        "requests": len(rows),
        "status_counts": codes,
        "answered_p50_s": round(_percentile(ok, 0.5), 4) if ok else None,
        "answered_p99_s": round(_percentile(ok, 0.99), 4) if ok else None,
        "all_p99_s": round(_percentile([s for _, s in rows], 0.99), 4),
        "seconds": round(seconds, 2),
        "rss_mb": {"before": round(before), "peak": round(peak), "after": round(after)},
        "load_average": os.getloadavg(),
    }
    runs = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    runs[args.label] = result
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(runs, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
