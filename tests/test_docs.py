"""The documentation builds without a single warning (gallery not executed here:
tests/test_examples.py runs every example)."""

import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("numpydoc")
    pytest.importorskip("sphinx_gallery")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-D", "plot_gallery=0", "-d", str(tmp_path / "doctrees"), str(DOCS),
         str(tmp_path / "html")],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    pages = list((tmp_path / "html").rglob("*.html"))
    assert len(pages) > 20
    for name in ("install", "tour", "routing", "api", "benchmarks", "papers"):
        assert (tmp_path / "html" / f"{name}.html").exists()
