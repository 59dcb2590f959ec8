"""``--head`` files (.npz and torch state dicts), ``evaluate --head`` and ``report``."""

import io
import json
from collections import OrderedDict

import numpy as np
import pytest

import sklearn_spur
from sklearn_spur import ERMClassifier, NeuronTuner, group_report, save_embeddings
from sklearn_spur._cli_head import HeadFileError, load_head
from sklearn_spur.cli import main

torch = pytest.importorskip("torch")


def _head(n_out=3, d=5, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n_out, d)).astype(np.float32),
            rng.normal(size=n_out).astype(np.float32))


def test_npz_and_state_dict_heads_read_back_exactly(tmp_path):
    W, b = _head()
    np.savez(tmp_path / "h.npz", W=W, b=b, classes=np.array(["cat", "dog", "eel"]))
    got = load_head(tmp_path / "h.npz")
    assert len(got) == 3 and got[2].tolist() == ["cat", "dog", "eel"]
    np.testing.assert_array_equal(got[0], W)
    np.testing.assert_array_equal(got[1], b)
    layer = torch.nn.Linear(5, 3)
    torch.save(layer.state_dict(), tmp_path / "h.pt")
    W_pt, b_pt = load_head(tmp_path / "h.pt")
    np.testing.assert_array_equal(W_pt, layer.weight.detach().numpy())
    np.testing.assert_array_equal(b_pt, layer.bias.detach().numpy())
    # a whole model's state dict: its one 2-D weight with a bias is the head
    model = torch.nn.Sequential(OrderedDict(
        conv=torch.nn.Conv1d(1, 5, 3), bn=torch.nn.BatchNorm1d(5),
        fc=torch.nn.Linear(5, 3)))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    W_m, b_m = load_head(tmp_path / "model.pth")
    np.testing.assert_array_equal(W_m, model.fc.weight.detach().numpy())
    np.testing.assert_array_equal(b_m, model.fc.bias.detach().numpy())
    # bias-free layer: zero bias
    torch.save(torch.nn.Linear(5, 3, bias=False).state_dict(), tmp_path / "nb.pt")
    assert not load_head(tmp_path / "nb.pt")[1].any()


class _Payload:
    """Pickles as a call that creates a file: what a forged head file would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_forged_torch_file_is_refused_and_never_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"
    torch.save({"weight": torch.ones(2, 3), "bias": _Payload(marker)},
               tmp_path / "evil.pt")
    assert not marker.exists()
    with pytest.raises(HeadFileError, match="weights_only=True"):
        load_head(tmp_path / "evil.pt")
    assert not marker.exists()  # the payload never ran
    X = np.random.default_rng(0).normal(size=(20, 3))
    save_embeddings(tmp_path / "a.npz", X, y=np.arange(20) % 2,
                    spurious=np.arange(20) % 2)
    code = main(["evaluate", "--train", str(tmp_path / "a.npz"), "--test",
                 str(tmp_path / "a.npz"), "--head", str(tmp_path / "evil.pt")],
                out=io.StringIO())
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "refused by torch.load" in err
    assert not marker.exists()


def _bad_head(tmp_path, kind):
    W, b = _head()
    path = tmp_path / ("h.pt" if kind.startswith("pt-") else "h.npz")
    if kind == "missing-b":
        np.savez(path, W=W)
    elif kind == "W-1d":
        np.savez(path, W=W[0], b=b[:1])
    elif kind == "b-length":
        np.savez(path, W=W, b=b[:2])
    elif kind == "nan":
        np.savez(path, W=np.where(W > 1, np.nan, W), b=b)
    elif kind == "classes-length":
        np.savez(path, W=W, b=b, classes=np.arange(2))
    elif kind == "classes-duplicate":
        np.savez(path, W=W, b=b, classes=np.array([0, 1, 1]))
    elif kind == "object":
        np.savez(path, W=W, b=np.array([None, 1, 2], dtype=object))
    elif kind == "pt-two-layers":
        torch.save(torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(),
                                       torch.nn.Linear(4, 3)).state_dict(), path)
    elif kind == "npy-renamed":
        np.save(tmp_path / "h.npy", W)
        (tmp_path / "h.npy").rename(path)
    elif kind == "pt-tensor":
        torch.save(torch.ones(3, 5), path)
    elif kind == "pt-garbage":
        path.write_bytes(b"not a torch file")
    elif kind == "suffix":
        path = tmp_path / "h.pkl"
        path.write_bytes(b"")
    elif kind == "absent":
        path = tmp_path / "absent.npz"
    elif kind == "width":
        np.savez(path, W=np.ones((3, 4)), b=b)
    return str(path)


@pytest.mark.parametrize("kind, match", [
    ("missing-b", "missing key 'b'"), ("W-1d", "must be 2-D"),
    ("b-length", "3 outputs but the bias has shape (2,)"),
    ("nan", "NaN or infinity"), ("classes-length", "'classes' has shape (2,)"),
    ("classes-duplicate", "distinct labels"), ("object", "not Python objects"),
    ("npy-renamed", "not a .npz file"),
    ("pt-two-layers", "found 2 linear layers (0, 2)"),
    ("pt-tensor", "not a state dict"), ("pt-garbage", "not a readable torch file"),
    ("suffix", "expected a .npz"), ("absent", "no such file"),
    ("width", "the head takes 4 features but the embeddings have 5"),
])
def test_bad_head_files_exit_2_with_one_line(tmp_path, capsys, kind, match):
    rng = np.random.default_rng(0)
    save_embeddings(tmp_path / "a.npz", rng.normal(size=(30, 5)),
                    y=np.arange(30) % 3, spurious=np.arange(30) % 2)
    head = _bad_head(tmp_path, kind)
    code = main(["evaluate", "--train", str(tmp_path / "a.npz"), "--test",
                 str(tmp_path / "a.npz"), "--method", "erm", "--head", head],
                out=io.StringIO())
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"sklearn-spur: error: {head}: ") and match in err, err


def _files(tmp_path, b):
    paths = {}
    for split in ("train", "val", "test"):
        paths[split] = str(tmp_path / f"{split}.npz")
        save_embeddings(paths[split], getattr(b, f"X_{split}"),
                        y=getattr(b, f"y_{split}"),
                        spurious=getattr(b, f"spurious_{split}"))
    paths["head"] = str(tmp_path / "fc.pt")
    torch.save(b.head.state_dict(), paths["head"])
    return paths


def _evaluate(paths, *extra):
    out = io.StringIO()
    assert main(["evaluate", "--train", paths["train"], "--val", paths["val"],
                 "--test", paths["test"], "--method", "erm", "neurontune", "--json",
                 *extra], out=out) == 0
    doc = json.loads(out.getvalue())
    return doc, {r["method"]: r["worst_group_accuracy"] for r in doc["results"]}


def test_evaluate_uses_the_given_head_and_says_which(waterdigits, tmp_path):
    b = waterdigits
    paths = _files(tmp_path, b)

    def wga(est):
        return group_report(b.y_test, est.predict(b.X_test),
                            spurious=b.spurious_test).worst_group_accuracy

    doc, got = _evaluate(paths, "--head", paths["head"])
    assert doc["head"] == f"{paths['head']} (W shape (2, 64), 2 classes: [0, 1])"
    assert got["erm"] == wga(ERMClassifier(head=b.head).fit(b.X_train, b.y_train))
    assert got["neurontune"] == wga(
        NeuronTuner(head=b.head, random_state=0).fit(b.X_val, b.y_val))
    doc, got = _evaluate(paths)  # no head: one ERM head refitted on train, for all
    assert doc["head"].startswith("refitted logistic regression on train")
    erm = ERMClassifier().fit(b.X_train, b.y_train)
    stand_in = (erm.coef_, erm.intercept_, erm.classes_)
    assert got["erm"] == wga(erm)
    assert got["neurontune"] == wga(
        NeuronTuner(head=stand_in, random_state=0).fit(b.X_val, b.y_val))


def test_no_stand_in_head_for_methods_that_read_none(tmp_path):
    p = _small_files(tmp_path)
    out = io.StringIO()
    assert main(["evaluate", "--train", p["val"], "--val", p["val"], "--test",
                 p["test"], "--method", "dfr", "probe", "--json"], out=out) == 0
    assert json.loads(out.getvalue())["head"] == "none (the methods run read no head)"


# --------------------------------------------------------------------- report
class _FakeDiagnosis:
    recommended_ = ERMClassifier()

    def to_html(self, path):
        with open(path, "w") as fh:
            fh.write("<!DOCTYPE html><title>fake</title>")

    def to_markdown(self, path=None):  # as Diagnosis.to_markdown
        text = "# fake diagnosis\n"
        if path is not None:
            with open(path, "w") as fh:
                fh.write(text)
        return text

    def to_dict(self):
        return {"worst_group_accuracy": 0.5}


@pytest.fixture
def fake_diagnose(monkeypatch):
    calls = []

    def diagnose(*args, **kwargs):
        calls.append((args, kwargs))
        return _FakeDiagnosis()

    monkeypatch.setattr(sklearn_spur, "diagnose", diagnose, raising=False)
    return calls


def _small_files(tmp_path):
    rng = np.random.default_rng(0)
    paths = {}
    for i, split in enumerate(("train", "val", "test")):
        y, s = np.arange(40) % 2, (np.arange(40) // 2) % 2
        X = np.c_[y + rng.normal(0, .5, 40), s + rng.normal(0, .5, 40)]
        paths[split] = str(tmp_path / f"{split}.npz")
        save_embeddings(paths[split], X, y=y, spurious=None if i == 0 else s)
    W, b = _head(n_out=1, d=2)
    paths["head"] = str(tmp_path / "head.npz")
    np.savez(paths["head"], W=W, b=b)
    return paths


@pytest.mark.parametrize("suffix, first", [(".html", "<!DOCTYPE html>"),
                                           (".md", "# fake diagnosis"),
                                           (".json", "{")])
def test_report_passes_files_head_and_options_to_diagnose(
        tmp_path, capsys, fake_diagnose, suffix, first):
    p = _small_files(tmp_path)
    target = tmp_path / f"report{suffix}"
    code = main(["report", "--train", p["train"], "--val", p["val"], "--test",
                 p["test"], "--head", p["head"], "-o", str(target), "--seed", "3",
                 "--n-boot", "7", "-v"], out=io.StringIO())
    assert code == 0, capsys.readouterr().err
    (args, kwargs), = fake_diagnose
    head, X_train, y_train, X_val, y_val = args
    W, b = load_head(p["head"])
    np.testing.assert_array_equal(head[0], W)
    np.testing.assert_array_equal(head[1], b)
    assert X_train.shape == X_val.shape == (40, 2) and y_val.tolist() == y_train.tolist()
    assert kwargs["spurious_train"] is None  # not in the train file
    assert kwargs["spurious_val"].tolist() == ((np.arange(40) // 2) % 2).tolist()
    assert kwargs["X_test"].shape == (40, 2) and kwargs["y_test"] is not None
    assert (kwargs["random_state"], kwargs["n_boot"], kwargs["verbose"]) == (3, 7, True)
    assert target.read_text().startswith(first)
    if suffix == ".json":
        assert json.loads(target.read_text()) == {"worst_group_accuracy": 0.5}


def test_report_json_without_head_refits_erm_and_says_so(tmp_path, capsys,
                                                         fake_diagnose):
    p = _small_files(tmp_path)
    out = io.StringIO()
    assert main(["report", "--train", p["train"], "--val", p["val"], "--json"],
                out=out) == 0
    doc = json.loads(out.getvalue())
    assert doc["diagnosis"] == {"worst_group_accuracy": 0.5}
    assert doc["head"].startswith("refitted logistic regression on train")
    assert doc["inputs"]["output"] is None  # --json alone writes no file
    (args, kwargs), = fake_diagnose
    erm = ERMClassifier().fit(args[1], args[2])
    np.testing.assert_array_equal(args[0][0], erm.coef_)
    assert "X_test" not in kwargs and "n_boot" not in kwargs
    assert "recommended: ERMClassifier" in capsys.readouterr().err


@pytest.mark.parametrize("argv, match", [
    (["-o", "r.txt"], "written as .html, .md or .json"),
    (["-o", "no/such/dir/r.html"], "no such directory"),
])
def test_report_refuses_an_output_before_running(tmp_path, capsys, fake_diagnose,
                                                 argv, match):
    p = _small_files(tmp_path)
    argv = [str(tmp_path / a) if a.startswith(("r.", "no/")) else a for a in argv]
    code = main(["report", "--train", p["train"], "--val", p["val"], *argv],
                out=io.StringIO())
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and match in err
    assert fake_diagnose == []


def test_report_with_the_real_diagnose(tmp_path):
    if not hasattr(sklearn_spur, "diagnose"):
        pytest.skip("sklearn_spur.diagnose is not in this build yet (branch diagnose)")
    p = _small_files(tmp_path)
    out = io.StringIO()
    assert main(["report", "--train", p["train"], "--val", p["val"], "--test",
                 p["test"], "--head", p["head"], "-o", str(tmp_path / "r.html"),
                 "--n-boot", "20", "--json"], out=out) == 0
    doc = json.loads(out.getvalue())
    assert doc["diagnosis"] and (tmp_path / "r.html").stat().st_size > 1000
    assert "<html" in (tmp_path / "r.html").read_text().lower()


def test_npz_member_with_bytes_past_its_header_is_refused(tmp_path):
    # read as load_embeddings reads members: a forged header is caught
    import zipfile

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.eye(2, 3))
    path = tmp_path / "forged.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("W.npy", buf.getvalue() + b"\x00" * 16)
        bias = io.BytesIO()
        np.lib.format.write_array(bias, np.zeros(2))
        zf.writestr("b.npy", bias.getvalue())
    with pytest.raises(HeadFileError, match="forged header"):
        load_head(path)
