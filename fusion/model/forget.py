"""Forgetting a user in a checkpoint: their id leaves the id maps and, for a recommendation
model, their entries leave the training record, so no file names them and the next warm start
trains without them. The weights hold no per-user rows (a user is pooled from their items), so
nothing else in a checkpoint is about one person.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from fusion.model.checkpoint import ID_MAPS, TRAINED, read_meta, read_trained
from kg.export import load_id_maps


def forget_user_in_checkpoint(path: str | Path, user_id: str) -> bool:
    """Remove `user_id` from the checkpoint at `path`; whether it held them. Each file is
    replaced atomically; re-running after an interruption finishes the job."""
    path = Path(path)
    meta = read_meta(path)  # a missing or damaged checkpoint fails here, before any change
    found = False
    maps = load_id_maps(path / ID_MAPS)
    if user_id in maps.get("user", []):
        maps["user"] = [u for u in maps["user"] if u != user_id]
        _replace(path / ID_MAPS, json.dumps(maps, ensure_ascii=False).encode())
        found = True
    trained = read_trained(path)
    # A recommendation model's record is keyed by user; a related-items one holds products only.
    if trained is not None and meta["config"]["task"] == "recommend" and user_id in trained:
        del trained[user_id]
        _replace(path / TRAINED, _gzip_json(trained))
        found = True
    return found


def _gzip_json(obj: Any) -> bytes:
    return gzip.compress(json.dumps(obj).encode(), mtime=0)


def _replace(file: Path, content: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
