"""The sample shipped in the repository: small, real, documented, dense enough to train on; and
the choice between it and the shared data."""

from __future__ import annotations

import shutil

from kg.readers import read_catalogue
from kg.rejects import RejectLog
from kg.samples import CATALOGUE, MAGAZINE, RATINGS, SAMPLE_DIR, default_input
from kg.schema import Rel


def test_the_sample_is_small_real_and_documented():
    files = [SAMPLE_DIR / CATALOGUE, SAMPLE_DIR / RATINGS]
    assert sum(f.stat().st_size for f in files) < 400_000
    readme = (SAMPLE_DIR / "README.md").read_text()
    assert "McAuley" in readme and "do not redistribute" in readme
    log = RejectLog()
    catalogue = read_catalogue(files[0], interactions=files[1], log=log)
    assert len(catalogue.products) == 300 and len(log) == 0
    also_bought = {
        (e.src, e.dst)
        for e in catalogue.edges
        if e.rel == Rel.ALSO_BOUGHT and e.dst in catalogue.products and e.src != e.dst
    }
    assert len(also_bought) == 3717  # the README's count: ~370 test pairs in a 10% split
    assert len(catalogue.interactions) == 6763


def test_the_shared_data_wins_when_present(tmp_path, monkeypatch):
    monkeypatch.setenv("KGREC_DATA", str(tmp_path))
    assert default_input().catalogue == SAMPLE_DIR / CATALOGUE
    assert "in-repo" in default_input().source
    shared = tmp_path / MAGAZINE
    shared.mkdir()
    shutil.copy(SAMPLE_DIR / CATALOGUE, shared / CATALOGUE)
    assert default_input().catalogue == shared / CATALOGUE
    assert default_input().interactions is None  # no ratings file there
    shutil.copy(SAMPLE_DIR / RATINGS, shared / RATINGS)
    assert default_input().interactions == shared / RATINGS
