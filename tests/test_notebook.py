"""notebooks/search.ipynb runs headless, top to bottom, offline, and shows result grids."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from conftest import TINY_CONFIG  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "search.ipynb"
THUMB = '<img src="data:image/jpeg;base64,'
# Grids in the notebook, in order: text search k=6, image search k=4, per_video=3 search k=8.
EXPECTED_GRIDS = [6, 4, 8]


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_notebook_runs_offline_and_shows_results(tmp_path, monkeypatch):
    work = tmp_path / "work"
    monkeypatch.setenv("VIDCLIP_NOTEBOOK_DIR", str(work))
    monkeypatch.setenv("VIDCLIP_NOTEBOOK_PRETRAINED", "none")
    # The tiny architecture keeps this test quick; the notebook's default is ViT-B-32.
    monkeypatch.setenv("VIDCLIP_NOTEBOOK_MODEL", "vidclip-tiny")
    monkeypatch.setenv("VIDCLIP_NOTEBOOK_MODEL_CONFIG", TINY_CONFIG)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # as a user's kernel runs it: no progress widget warnings
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    stderr = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stderr")
    assert "Traceback" not in stderr
    assert "TqdmWarning" not in stderr and "IProgress" not in stderr, stderr
    grids = [o.data["text/html"] for o in outputs if "vidclip-hits" in o.get("data", {}).get("text/html", "")]
    assert [g.count(THUMB) for g in grids] == EXPECTED_GRIDS
    for grid in grids:
        srcs = re.findall(r'<video controls preload="none" src="([^"]+)"', grid)
        assert len(srcs) == grid.count('class="vidclip-hit"') == grid.count(THUMB)
        assert all(re.search(r"#t=\d+(\.\d+)?,\d+(\.\d+)?$", s) for s in srcs), srcs
        # the working folder is under the kernel's folder: relative URLs, which JupyterLab serves
        assert all(s.startswith("work/videos/") for s in srcs), srcs
    assert "no thumbnail" not in "".join(grids)
    assert (work / "db").is_dir() and len(list((work / "videos").iterdir())) == 6
