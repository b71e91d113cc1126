"""Where `kgrec pipeline` reads when given no catalogue: the shared Magazine data beside the
repository when present, else the sample shipped in `kg/sample_data/`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MAGAZINE = "amazon-magazine-2018"
CATALOGUE, RATINGS = "meta_Magazine_Subscriptions.json.gz", "ratings.csv.gz"
SAMPLE_DIR = Path(__file__).parent / "sample_data" / MAGAZINE


@dataclass(frozen=True)
class Input:
    catalogue: Path
    interactions: Path | None  # None: the shared directory has no ratings file
    source: str  # what it is, for the user


def shared_data_dir() -> Path:
    """`$KGREC_DATA`, default `../shared/data` (beside the repository)."""
    return Path(os.environ.get("KGREC_DATA") or Path("..") / "shared" / "data")


def default_input() -> Input:
    """The full Magazine data in the shared data directory if it is there, else the sample."""
    shared = shared_data_dir() / MAGAZINE
    if (shared / CATALOGUE).is_file():
        ratings = shared / RATINGS
        interactions = ratings if ratings.is_file() else None
        return Input(shared / CATALOGUE, interactions, f"the Magazine data in {shared}")
    return Input(
        SAMPLE_DIR / CATALOGUE,
        SAMPLE_DIR / RATINGS,
        f"the in-repo Magazine sample ({SAMPLE_DIR}; {shared} not found)",
    )
