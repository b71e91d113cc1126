"""Text encoder throughput vs sentence-transformers, and cold vs warm cache, on Beauty titles.

    python benchmarks/bench_text_encoder.py [--limit N] [--out benchmarks/results/text_encoder.json]

Both encoders run the same model files on the same device in the same process, with the same
batch size, after a short warm-up each; `encode` is timed end to end (tokenisation included).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from text_encoder import TextEncoder, encode_with_cache
from text_encoder.model import default_model_dir

DATA = Path(os.environ.get("KGREC_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
TITLES = DATA / "amazon-beauty-2014" / "titles.csv.gz"
OUT = Path(__file__).parent / "results" / "text_encoder.json"


def load_titles(path: Path, limit: int | None) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        titles = [row["name"] for row in csv.DictReader(fh)]
    return titles[:limit] if limit else titles


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--titles", type=Path, default=TITLES)
    parser.add_argument("--limit", type=int, default=None, help="first N titles only")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    titles = load_titles(args.titles, args.limit)
    ours = TextEncoder.from_pretrained(device=args.device)
    reference = SentenceTransformer(str(default_model_dir()), device=args.device)
    warmup = titles[:256]
    ours.encode(warmup, batch_size=args.batch_size, progress=False)
    reference.encode(warmup, batch_size=args.batch_size)

    ref_vecs, ref_s = timed(
        lambda: reference.encode(titles, batch_size=args.batch_size, convert_to_tensor=True).cpu()
    )
    our_vecs, our_s = timed(lambda: ours.encode(titles, batch_size=args.batch_size, progress=False))
    cosine = F.cosine_similarity(our_vecs, ref_vecs.float())

    with tempfile.TemporaryDirectory() as cache_dir:
        (cold, cold_stats), cold_s = timed(
            lambda: encode_with_cache(ours, titles, cache_dir, args.batch_size, progress=False)
        )
        (warm, warm_stats), warm_s = timed(
            lambda: encode_with_cache(ours, titles, cache_dir, args.batch_size, progress=False)
        )
        cache_bytes = sum(p.stat().st_size for p in Path(cache_dir).iterdir())
    assert warm_stats.from_cache == len(titles) and torch.equal(cold, warm)

    n = len(titles)
    result = {
        "dataset": {"titles": str(args.titles), "count": n, "unique": len(set(titles))},
        "model": {
            "id": ours.model_id,
            "fingerprint": ours.fingerprint,
            "dim": ours.dim,
            "pooling": ours.spec.pooling,
            "max_length": ours.max_length,
        },
        "setup": {
            "device": str(ours.device),
            "batch_size": args.batch_size,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "throughput": {
            "kgrec_items_per_s": round(n / our_s, 1),
            "sentence_transformers_items_per_s": round(n / ref_s, 1),
            "ratio": round(ref_s / our_s, 3),
            "target_ratio": 1.0,
            "kgrec_s": round(our_s, 3),
            "sentence_transformers_s": round(ref_s, 3),
        },
        "equivalence": {
            "min_cosine": float(cosine.min()),
            "max_abs_diff": float((our_vecs - ref_vecs.float()).abs().max()),
            "target_min_cosine": 1 - 1e-5,
        },
        "cache": {
            "cold_s": round(cold_s, 3),
            "warm_s": round(warm_s, 4),
            "speedup": round(cold_s / warm_s, 1),
            "target_speedup": 50,
            "cold_encoded": cold_stats.encoded,
            "warm_from_cache": warm_stats.from_cache,
            "file_bytes": cache_bytes,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
