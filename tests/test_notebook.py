"""The quickstart notebook runs end to end (build → train → evaluate → query → explain) against the
test Neo4j server, on a small real slice of the Magazine catalogue, so it cannot rot."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
QUICKSTART = NOTEBOOKS / "quickstart.ipynb"
MAGAZINE = Path(os.environ["KGREC_DATA"]) / "amazon-magazine-2018"
SLICE_LINES = 600  # ~600 products, ~1,000 also_buy links among them: enough for a related split


def _outputs(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def _text(out: nbformat.NotebookNode) -> str:
    if out.output_type == "stream":
        return out.text
    return "".join(out.get("data", {}).get(kind, "") for kind in ("text/markdown", "text/plain"))


def test_quickstart_is_saved_without_outputs() -> None:
    nb = nbformat.read(QUICKSTART, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_quickstart_runs_against_neo4j(
    neo4j_clean, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalogue = tmp_path / "magazine_slice.json.gz"
    with (
        gzip.open(MAGAZINE / "meta_Magazine_Subscriptions.json.gz", "rt") as src,
        gzip.open(catalogue, "wt") as dst,
    ):
        for _, line in zip(range(SLICE_LINES), src, strict=False):
            dst.write(line)
    # The kernel inherits os.environ when it starts: conftest.py has already pointed kgrec's
    # local-server defaults at the test instance, so the notebook's default store (None) is it.
    monkeypatch.delenv("KGREC_NB_STORE", raising=False)
    monkeypatch.setenv("KGREC_NB_CATALOGUE", str(catalogue))
    monkeypatch.setenv("KGREC_NB_INTERACTIONS", "none")
    monkeypatch.setenv("KGREC_NB_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("KGREC_NB_EPOCHS", "2")
    monkeypatch.setenv("KGREC_NB_MAX_MINUTES", "1")

    nb = nbformat.read(QUICKSTART, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()  # raises CellExecutionError, with the cell's traceback, if any cell fails

    outputs = _outputs(nb)
    assert not [out for out in outputs if out.output_type == "error"]
    text = "\n".join(_text(out) for out in outputs)
    assert f"store: {neo4j_clean.uri}" in text  # the test server, reached as the default store
    assert "ALSO_BOUGHT" in text  # build summary counts
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) == 2, "expected the training curve and the explanation drawing"
    tables = [_text(out) for out in outputs if "text/markdown" in out.get("data", {})]
    assert any("fused" in t and "popularity" in t for t in tables), "evaluation table missing"
    assert any("Related to" in t and "| 5 |" in t for t in tables), "related-items table missing"
    assert (tmp_path / "work" / "model").is_dir()
