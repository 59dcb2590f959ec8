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


def test_diagnose_snippet_runs(waterdigits, tmp_path, monkeypatch):
    tour = re.search(r"## Quick tour\n\n```python\n(.*?)```", README, re.S).group(1)
    code = re.search(r"\*\*Diagnose in one call\*\*.*?```python\n(.*?)```", README,
                     re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope = {}
    with sklearn.config_context():  # the snippet follows the tour, in its scope
        exec(compile(tour + "\n" + code, "README.md", "exec"), scope)
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert scope["d"].recommended_.predict(scope["b"].X_test).shape == scope["b"].y_test.shape


def test_opening_commands():
    first_blocks = re.findall(r"```bash\n(.*?)\n```", README, re.S)[:2]
    assert "sklearn-spur demo" in first_blocks[0]
    assert "pytest" in first_blocks[1]
    assert all("pip install torch==2.13.0" in b for b in first_blocks)
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "test-command" in ci
