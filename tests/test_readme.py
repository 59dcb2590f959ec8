"""The README tells the truth: its Python snippet runs and its commands exist."""

import re
from pathlib import Path

import sklearn

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_quick_tour_runs(waterdigits, capsys):
    code = re.search(r"## Quick tour\n\n```python\n(.*?)```", README, re.S).group(1)
    with sklearn.config_context():
        exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert out.count("worst-group accuracy") == 2


def test_opening_commands():
    first_blocks = re.findall(r"```bash\n(.*?)\n```", README, re.S)[:2]
    assert "sklearn-spur demo" in first_blocks[0]
    assert "pytest" in first_blocks[1]
    assert all("pip install torch==2.13.0" in b for b in first_blocks)
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "test-command" in ci
