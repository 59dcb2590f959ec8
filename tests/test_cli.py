"""The command line: demo output, evaluate on files, exit codes on bad input."""

import io
import subprocess
import sys

import numpy as np
import pytest

from sklearn_spur import save_embeddings
from sklearn_spur.cli import main


def _write_splits(tmp_path, b):
    for split in ("train", "val", "test"):
        save_embeddings(tmp_path / f"{split}.npz", getattr(b, f"X_{split}"),
                        y=getattr(b, f"y_{split}"), spurious=getattr(b, f"spurious_{split}"))
    return [str(tmp_path / f"{s}.npz") for s in ("train", "val", "test")]


NAMES = {"ERM", "DFR", "SpuriousProbe+LR", "RRClArC", "SingleWeightEditor",
         "SingleWeightEditor-free", "NeuronTuner"}


def _rows(text):
    return {line.split()[0]: line.split() for line in text.splitlines()
            if line.split() and line.split()[0] in NAMES}


def test_demo_prints_table_and_plot(waterdigits, tmp_path):
    pytest.importorskip("matplotlib")
    out = io.StringIO()
    code = main(["demo", "--plot", str(tmp_path / "p.png")], out=out)
    assert code == 0
    rows = _rows(out.getvalue())
    assert set(rows) == NAMES  # every method of the package is in the demo
    erm_wga = float(rows["ERM"][-2])
    for name in NAMES - {"ERM"}:
        assert float(rows[name][-2]) > erm_wga + 0.2, (name, rows[name])
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_evaluate_skips_what_the_files_cannot_feed(waterdigits, tmp_path):
    b = waterdigits
    save_embeddings(tmp_path / "tr.npz", b.X_train, y=b.y_train)  # no attribute
    save_embeddings(tmp_path / "te.npz", b.X_test, y=b.y_test, spurious=b.spurious_test)
    out = io.StringIO()
    code = main(["evaluate", "--train", str(tmp_path / "tr.npz"),
                 "--test", str(tmp_path / "te.npz")], out=out)
    assert code == 0
    assert set(_rows(out.getvalue())) == {"ERM"}
    assert "skipping DFR: --val is required" in out.getvalue()


def test_evaluate_on_files(waterdigits, tmp_path):
    train, val, test = _write_splits(tmp_path, waterdigits)
    out = io.StringIO()
    code = main(["evaluate", "--train", train, "--val", val, "--test", test,
                 "--method", "erm", "--method", "dfr"], out=out)
    assert code == 0
    rows = _rows(out.getvalue())
    assert float(rows["DFR"][-2]) > float(rows["ERM"][-2]) + 0.2


@pytest.mark.parametrize("problem, match", [
    ("missing", "no such file"),
    ("no_spurious", "missing key 'spurious'"),
    ("nan", "NaN or infinity"),
    ("width", "features but the train"),
])
def test_bad_files_exit_2_with_one_line(tmp_path, capsys, problem, match):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y, s = np.arange(40) % 2, (np.arange(40) // 2) % 2
    save_embeddings(tmp_path / "train.npz", X, y=y, spurious=s)
    test_X = X.copy()
    kwargs = {"y": y, "spurious": s}
    if problem == "no_spurious":
        kwargs.pop("spurious")
    if problem == "nan":
        test_X[3, 1] = np.nan
    if problem == "width":
        test_X = X[:, :2]
    save_embeddings(tmp_path / "test.npz", test_X, **kwargs)
    test_path = tmp_path / ("absent.npz" if problem == "missing" else "test.npz")
    code = main(["evaluate", "--train", str(tmp_path / "train.npz"), "--test", str(test_path),
                 "--method", "erm"], out=io.StringIO())
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("sklearn-spur: error:")
    assert match in err and "Traceback" not in err


def test_dfr_without_val_exits_2(tmp_path, capsys):
    X = np.random.default_rng(0).normal(size=(20, 3))
    save_embeddings(tmp_path / "a.npz", X, y=np.arange(20) % 2, spurious=np.arange(20) % 2)
    code = main(["evaluate", "--train", str(tmp_path / "a.npz"),
                 "--test", str(tmp_path / "a.npz"), "--method", "dfr"], out=io.StringIO())
    assert code == 2 and "--val is required by method 'dfr'" in capsys.readouterr().err


def test_console_script_usage_error_exit_code():
    proc = subprocess.run([sys.executable, "-m", "sklearn_spur.cli", "evaluate"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--train" in proc.stderr
