"""diagnose() and Diagnosis: sections, intervals, choice without labels, exports."""

import base64
import io
import json
import shutil
import subprocess
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_spur import diagnose, make_inferred_group_scorer, to_torch
from sklearn_spur.datasets import make_spurious_gaussians
from sklearn_spur.diagnosis._bootstrap import bootstrap_report
from sklearn_spur.diagnosis._code import fit_code
from sklearn_spur.diagnosis._layout import fmt, lookup
from sklearn_spur.metrics import group_report

N_BOOT = 200


@pytest.fixture(scope="module")
def data():
    """Gaussians: training 90 % correlated, validation 90 %, test balanced; an
    ERM head fitted on training (it leans on the attribute)."""
    d = make_spurious_gaussians(1200, rho=0.9, n_val=800, val_rho=0.9,
                                random_state=0)
    t = make_spurious_gaussians(800, balanced=True, random_state=1)
    erm = LogisticRegression().fit(d.X, d.y)
    return SimpleNamespace(head=(erm.coef_, erm.intercept_), X_train=d.X,
                           y_train=d.y, s_train=d.spurious, X_val=d.X_val,
                           y_val=d.y_val, s_val=d.spurious_val, X_test=t.X,
                           y_test=t.y, s_test=t.spurious)


def _run(b, annotated=True, **kw):
    labels = ({"spurious_train": b.s_train, "spurious_val": b.s_val}
              if annotated else {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return diagnose(b.head, b.X_train, b.y_train, b.X_val, b.y_val,
                        **{"X_test": b.X_test, "y_test": b.y_test,
                           "spurious_test": b.s_test, "n_boot": N_BOOT,
                           "random_state": 0, **labels, **kw})


@pytest.fixture(scope="module")
def annotated(data):
    return _run(data)


@pytest.fixture(scope="module")
def label_free(data):
    return _run(data, annotated=False,
                images_val=np.random.default_rng(0).random((800, 6, 6, 3)))


def _timeless(doc):
    doc["setting"].pop("seconds")
    for row in doc["methods"]:
        row.pop("fit_seconds")
    return doc


def test_sections_and_recommendation(annotated, data):
    doc = annotated.to_dict()
    json.dumps(doc, allow_nan=False)  # JSON as is, no NaN
    assert set(doc) == {"setting", "groups", "shortcut", "methods", "strength_curve",
                        "recommendation"}
    names = {r["name"] for r in doc["methods"]}
    assert {"ERM", "DFR", "AFR", "JTT", "SingleWeightEditor"} <= names
    assert [r["recommended"] for r in doc["methods"]].count(True) == 1
    chosen = next(r for r in doc["methods"] if r["recommended"])
    # the choice is the best worst group on the selection half, not on test
    best = max(r["selection_score"] for r in doc["methods"])
    assert chosen["selection_score"] == best
    assert doc["recommendation"]["name"] == chosen["name"]
    assert chosen["worst_group_accuracy"] > doc["groups"]["summary"][0][
        "worst_group_accuracy"] + 0.2  # the head's shortcut, fixed
    assert doc["shortcut"]["kind"] == "probe"
    assert doc["shortcut"]["concepts"][0]["separability"] > 0.95
    assert len(doc["groups"]["rows"]) == 4
    shares = [r["train_share"] for r in doc["groups"]["rows"]]
    assert np.isclose(sum(shares), 1.0)
    assert doc["strength_curve"]["method"] == "SingleWeightEditor"
    assert len(doc["strength_curve"]["strength"]) == 25
    assert "replace_head(model" in doc["recommendation"]["export_code"]


def test_recommended_predicts_and_exports(annotated, data):
    import torch

    est = annotated.recommended_
    pred = est.predict(data.X_test)
    assert pred.shape == data.y_test.shape
    logits = to_torch(est)(torch.as_tensor(data.X_test[:50], dtype=torch.float32))
    assert np.array_equal(est.classes_[logits.argmax(1).numpy()], pred[:50])


def test_intervals_hold_the_estimates_and_repeat(annotated, data):
    doc = annotated.to_dict()
    for row in doc["groups"]["rows"]:
        for who in ("head", "recommended"):
            lo, hi = row[f"{who}_ci"]
            assert lo <= row[f"{who}_accuracy"] <= hi
    for row in doc["methods"] + doc["groups"]["summary"]:
        for name in ("worst_group_accuracy", "mean_accuracy"):
            lo, hi = row[f"{name}_ci"]
            assert lo <= row[name] <= hi and hi - lo < 0.2
    assert _timeless(_run(data).to_dict()) == _timeless(doc)  # deterministic


def test_bootstrap_matches_the_binomial_width():
    y = np.repeat([0, 1], 400)
    pred = y.copy()
    flip = (np.arange(800) // 2) % 2 == 0
    pred[flip] = 1 - pred[flip]  # every group: accuracy 0.5 over 200 samples
    rep = group_report(y, pred, spurious=np.tile([0, 1], 400))
    ci = bootstrap_report(rep, 4000, seed=0)
    half = (ci["groups"][:, 1] - ci["groups"][:, 0]) / 2
    assert np.allclose(half, 1.96 * np.sqrt(0.25 / 200), atol=0.01)
    lo, hi = ci["mean_accuracy"]
    assert hi - lo == pytest.approx(2 * 1.96 * np.sqrt(0.25 / 800), abs=0.01)
    # the min of 4 equal groups is biased low: E[min of 4 normals] = -1.03 sd
    assert np.mean(ci["worst_group_accuracy"]) == pytest.approx(
        0.5 - 1.03 * np.sqrt(0.25 / 200), abs=0.01)
    again = bootstrap_report(rep, 4000, seed=0)
    assert np.array_equal(again["groups"], ci["groups"])


def test_label_free_uses_no_group_label(label_free, data):
    doc = label_free.to_dict()
    assert not doc["setting"]["annotated"]
    needs = {r["needs"] for r in doc["methods"]}
    assert needs <= {"train labels", "val labels"}
    assert "dfr" in doc["setting"]["skipped"]
    # the selection groups are inferred (infer_groups' default): the head's
    # worst group there is far below its mean accuracy, and the choice lifts it
    erm = next(r for r in doc["methods"] if r["name"] == "ERM")
    assert erm["selection_score"] < erm["mean_accuracy"] - 0.2, erm
    assert doc["recommendation"]["name"] != "ERM"
    # the test attribute is for the report only: scrambling it leaves the choice
    rng = np.random.default_rng(1)
    scrambled = SimpleNamespace(**{**vars(data),
                                   "s_test": rng.permutation(data.s_test)})
    other = _run(scrambled, annotated=False).to_dict()
    assert other["recommendation"]["name"] == doc["recommendation"]["name"]
    assert ([r["selection_score"] for r in other["methods"]]
            == [r["selection_score"] for r in doc["methods"]])
    assert ([r["worst_group_accuracy"] for r in other["methods"]]
            != [r["worst_group_accuracy"] for r in doc["methods"]])


def test_selection_score_is_the_inferred_group_scorer(data):
    # without a test split the held-out half is both selection and evaluation
    d = diagnose(data.head, data.X_train, data.y_train, data.X_val[:400],
                 data.y_val[:400], n_boot=N_BOOT, random_state=0)
    assert d.setting_["evaluation"] == "validation (held-out half)"
    assert d.setting_["evaluation_groups"] == "inferred"
    assert d.setting_["n_evaluation"] == d.setting_["n_select"]
    scorer = make_inferred_group_scorer(head=data.head)
    # the refitted choice is scored on all of X_val[:400] as the scorer would
    from sklearn_spur.diagnosis._compare import _selection_scores, selection_groups

    split = SimpleNamespace(X=data.X_val[:400], y=data.y_val[:400], spurious=None)
    groups = selection_groups(split, data.head, False, 0)
    ours = _selection_scores(d.recommended_, split, groups)[0][0]
    assert ours == pytest.approx(scorer(d.recommended_, split.X, split.y))


def test_slices_and_thumbnails(label_free, data):
    slices = label_free.shortcut_["slices"]
    assert sum(s["size"] for s in slices) == len(data.y_val)
    assert [s["accuracy"] for s in slices] == sorted(s["accuracy"] for s in slices)
    for s in slices:
        assert 1 <= len(s["typical"]) <= 8
        assert np.all(data.y_val[s["typical"]] == s["class"])
    html = label_free.to_html()
    assert html.count("typical samples.</figcaption>") == len(slices)


def _html_tables(html):
    html5lib = pytest.importorskip("html5lib")
    doc = html5lib.parse(html, namespaceHTMLElements=False)
    tables = [[[(td.text or "", td.get("data-key")) for td in tr.findall("td")]
               for tr in t.find("tbody").findall("tr")] for t in doc.iter("table")]
    return doc, tables


@pytest.mark.parametrize("which", ["annotated", "label_free"])
def test_html_is_self_contained_and_matches_the_dict(which, request, tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    diagnosis = request.getfixturevalue(which)
    path = tmp_path / "report.html"
    html = diagnosis.to_html(path)
    assert path.read_text(encoding="utf-8") == html
    doc, tables = _html_tables(html)
    images = list(doc.iter("img"))
    assert len(images) >= 3
    for img in images:
        src = img.get("src")
        assert src.startswith("data:image/png;base64,")
        pixels = imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert pixels.ndim == 3 and pixels.std() > 0  # decodes, not blank
    assert not list(doc.iter("script")) and not list(doc.iter("link"))
    assert "http://" not in html and "https://" not in html
    d = diagnosis.to_dict()
    keys = [key for table in tables for row in table for _, key in row if key]
    for table in tables:
        for row in table:
            for text, key in row:
                if key:
                    assert text == fmt(lookup(d, key)), key
    # every number of the comparison and the group table is shown
    for i, row in enumerate(d["methods"]):
        for name in ("worst_group_accuracy", "mean_accuracy", "selection_score",
                     "worst_group_accuracy_ci", "fit_seconds"):
            assert f"methods/{i}/{name}" in keys
    assert len([k for k in keys if k.startswith("groups/rows/")]) == 8 * len(
        d["groups"]["rows"])
    # the Markdown shows the same tables
    md_rows = [line for line in diagnosis.to_markdown().splitlines()
               if line.startswith("| ") and not line.startswith("|---")]
    html_rows = ["| " + " | ".join(text for text, _ in row) + " |"
                 for table in tables for row in table]
    assert set(html_rows) <= set(md_rows)


def test_markdown_writes_and_names_the_choice(annotated, tmp_path):
    text = annotated.to_markdown(tmp_path / "r.md")
    assert (tmp_path / "r.md").read_text(encoding="utf-8") == text
    assert f"## Recommendation: {annotated.recommendation_['name']}" in text
    assert "```python" in text
    assert annotated.recommendation_["paragraph"] in text


def test_code_snippets_reproduce_the_methods(data):
    from sklearn_spur._cli_methods import METHODS

    ns = {"head": data.head, "X_train": data.X_train, "y_train": data.y_train,
          "spurious_train": data.s_train, "X_val": data.X_val, "y_val": data.y_val,
          "spurious_val": data.s_val}
    train = SimpleNamespace(X=data.X_train, y=data.y_train, spurious=data.s_train)
    val = SimpleNamespace(X=data.X_val, y=data.y_val, spurious=data.s_val)
    for key in ("dfr", "editor", "editor-free", "jtt", "neurontune", "rrclarc"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = METHODS[key].fit(train, val, data.head, 3)
            scope = dict(ns)
            exec(fit_code(key, type(ref).__name__, type(ref), 3), scope)  # noqa: S102
        assert np.array_equal(scope["est"].predict(data.X_test),
                              ref.predict(data.X_test)), key


def test_bad_input(data):
    b = data
    with pytest.raises(ValueError, match="X_val has 3 features"):
        diagnose(b.head, b.X_train, b.y_train, b.X_val[:, :3], b.y_val)
    with pytest.raises(ValueError, match="y_val must be 1-D"):
        diagnose(b.head, b.X_train, b.y_train, b.X_val, b.y_val[:-1])
    with pytest.raises(ValueError, match="spurious_test without X_test"):
        diagnose(b.head, b.X_train, b.y_train, b.X_val, b.y_val, spurious_test=b.s_test)
    with pytest.raises(ValueError, match="pass both X_test and y_test"):
        diagnose(b.head, b.X_train, b.y_train, b.X_val, b.y_val, X_test=b.X_test)
    with pytest.raises(ValueError, match="deployed head"):
        diagnose(None, b.X_train, b.y_train, b.X_val, b.y_val)
    with pytest.raises(ValueError, match="images_val"):
        diagnose(b.head, b.X_train, b.y_train, b.X_val, b.y_val,
                 images_val=np.zeros((5, 4, 4)))
    with pytest.raises(ValueError, match="spurious_val"):
        diagnose(b.head, b.X_train, b.y_train, b.X_val, b.y_val,
                 spurious_val=b.s_val[:-1])
    with pytest.raises(InvalidParameterError, match="n_boot"):
        diagnose(b.head, b.X_train, b.y_train, b.X_val, b.y_val, n_boot=0)


def test_verbose_shows_progress(data, capsys):
    diagnose(data.head, data.X_train[:300], data.y_train[:300], data.X_val[:300],
             data.y_val[:300], n_boot=20, random_state=0, verbose=True)
    assert "diagnose" in capsys.readouterr().err


def _browser():
    return next((p for p in (shutil.which(n) for n in (
        "chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.skipif(_browser() is None, reason="no Chromium on PATH (.ci/run installs "
                    "it with apt-get where it can): the HTML is not rendered")
def test_html_renders_in_a_headless_browser(annotated, tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    page, shot = tmp_path / "report.html", tmp_path / "shot.png"
    annotated.to_html(page)
    subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", "--window-size=1000,1400",
                    f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=False)
    pixels = imread(shot)[..., :3]
    assert pixels.reshape(-1, 3).std(axis=0).max() > 0.05  # not one colour
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
