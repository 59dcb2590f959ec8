"""
Concept directions: find the shortcut, measure it, remove it (RR-ClArC)
=======================================================================

:class:`~sklearn_spur.SpuriousProbe` learns the direction of embedding space
along which the spurious attribute (here the background colour) moves the
embeddings, reports how well it separates the attribute and how much the
trained head leans on it, and projects it out.
:class:`~sklearn_spur.RRClArCClassifier` refits the head with the RR-ClArC
penalty ``lam * ||W v||^2`` instead, which for a linear head is the same as
shrinking the embeddings along ``v``.

The recipe of the paper: fit the probe where the attribute is labelled and
balanced (the validation split), keep it fixed, and retrain the last layer on
the spuriously correlated training data without the concept.

Set ``SKLEARN_SPUR_FAST=1`` for a quick run (smaller grids, no multi-class part).
"""

# %%
# Data and the baseline
# ---------------------
# WaterDigits: digits on a coloured background, embedded by a small CNN
# trained by ERM (cached on disk after the first call). In training 95 % of
# every class has "its" colour; validation and test are balanced.
import os

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline

from sklearn_spur import (
    ERMClassifier,
    RRClArCClassifier,
    SpuriousProbe,
    worst_group_accuracy,
)
from sklearn_spur.datasets import make_waterdigits

FAST = os.environ.get("SKLEARN_SPUR_FAST") == "1"
data = make_waterdigits(n_classes=2, rho=0.95, random_state=0)


def wga(estimator, split="test"):
    pred = estimator.predict(data[f"X_{split}"])
    return worst_group_accuracy(data[f"y_{split}"], pred,
                                spurious=data[f"spurious_{split}"])


def attribute_auc(Z, s):
    """How well a fresh logistic regression reads the attribute (cross-validated)."""
    p = cross_val_predict(LogisticRegression(max_iter=5000), Z, s, cv=3,
                          method="decision_function")
    return roc_auc_score(s, p)


erm = ERMClassifier(head=data.head).fit(data.X_train, data.y_train)
print(f"ERM (the CNN's own head): test WGA {wga(erm):.3f}")

# %%
# The concept direction
# ---------------------
# The default direction is the *pattern* ``mean(z | colour 1) - mean(z | colour
# 0)``, estimated within each class so that it does not absorb the digit
# signal. ``separability_`` is the ROC AUC of the concept scores ``z . v`` for
# the colour; ``head_sensitivity`` is ``W v``, how much each class logit moves
# along the direction (TCAV's sensitivity for a linear head).
probe = SpuriousProbe().fit(data.X_val, data.y_val, spurious=data.spurious_val)
print(f"separability on validation {probe.separability_[0]:.3f}, on test "
      f"{probe.separability(data.X_test, data.spurious_test, data.y_test)[0]:.3f}")
print("head sensitivity W v per class:",
      probe.head_sensitivity(data.head).ravel().round(2))

# %%
# Removing it
# -----------
# ``transform`` moves every embedding's concept score to the reference (the
# mean score of colour-0 samples): ``z - strength * (z . v - r) v``. Then a
# class-balanced logistic regression is retrained on the projected training
# split. The probe is wrapped in :class:`~sklearn.frozen.FrozenEstimator` so
# the pipeline does not refit it on the (correlated) training data.
fixed = make_pipeline(FrozenEstimator(probe),
                      LogisticRegression(class_weight="balanced", max_iter=5000))
fixed.fit(data.X_train, data.y_train)
plain = LogisticRegression(class_weight="balanced", max_iter=5000)
plain.fit(data.X_train, data.y_train)
print(f"balanced logistic regression on training embeddings: test WGA {wga(plain):.3f}")
print(f"... after removing the colour direction:             test WGA {wga(fixed):.3f}")
print(f"colour AUC of a fresh linear model on test: before "
      f"{attribute_auc(data.X_test, data.spurious_test):.3f}, after "
      f"{attribute_auc(probe.transform(data.X_test), data.spurious_test):.3f}")

# %%
# Pattern or filter?
# ------------------
# A classifier's weight vector (``direction="svm"``, ``"logistic"``, ...) is a
# *filter*: it cancels the noise that correlates with the concept, so it
# points elsewhere than the concept itself, and removing it leaves the colour
# readable (Pahde et al.; Haufe et al. 2014).
svm = SpuriousProbe("svm", random_state=0).fit(data.X_val, data.y_val,
                                               spurious=data.spurious_val)
cos = float(svm.concept_directions_[0] @ probe.concept_directions_[0])
svm_fixed = make_pipeline(FrozenEstimator(svm),
                          LogisticRegression(class_weight="balanced", max_iter=5000))
svm_fixed.fit(data.X_train, data.y_train)
print(f"SVM direction: cosine with the pattern {cos:.2f}; colour AUC after removal "
      f"{attribute_auc(svm.transform(data.X_test), data.spurious_test):.3f}; test WGA "
      f"{wga(svm_fixed):.3f}")

# %%
# RR-ClArC: penalise the head's sensitivity instead
# -------------------------------------------------
# ``lam = 0`` is a plain logistic regression; as ``lam`` grows ``W v`` goes to
# zero and the head matches the projection's. ``equivalent_strength_`` is the
# projection strength giving the same head.
lams = [0.0, 0.1, 1.0, 100.0] if FAST else [0.0, 0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0]
curve = []
for lam in lams:
    rr = RRClArCClassifier(probe=FrozenEstimator(probe), head=data.head, lam=lam,
                           class_weight="balanced").fit(data.X_train, data.y_train)
    curve.append((lam, abs(rr.head_sensitivity_[0, 0]), wga(rr, "val"), wga(rr)))
print("     lam   |W v|  val WGA  test WGA")
for lam, sens, val, test in curve:
    print(f"{lam:8.2f}  {sens:6.3f}   {val:.3f}    {test:.3f}")

# %%
# Choosing ``lam`` by grid search
# -------------------------------
# With metadata routing on, ``GridSearchCV`` routes ``spurious`` to ``fit``
# and to the worst-group scorer. The head is fitted on the training split and
# scored on the validation split (one predefined split): folds of the
# training split would hold only a few dozen samples of each minority group,
# too few to rank the values reliably.
import sklearn
from sklearn.model_selection import GridSearchCV

from sklearn_spur import worst_group_scorer

n_train, n_val = len(data.y_train), len(data.y_val)
X_all = np.concatenate([data.X_train, data.X_val])
y_all = np.concatenate([data.y_train, data.y_val])
s_all = np.concatenate([data.spurious_train, data.spurious_val])
train_then_val = [(np.arange(n_train), np.arange(n_train, n_train + n_val))]
rr = RRClArCClassifier(probe=FrozenEstimator(probe), head=data.head, class_weight="balanced")
with sklearn.config_context(enable_metadata_routing=True):
    search = GridSearchCV(rr, {"lam": lams}, scoring=worst_group_scorer,
                          cv=train_then_val, refit=False)
    search.fit(X_all, y_all, spurious=s_all)
rr.set_params(**search.best_params_).fit(data.X_train, data.y_train)
print(f"GridSearchCV: lam {search.best_params_['lam']}, test WGA {wga(rr):.3f} "
      f"(projection and logistic regression: {wga(fixed):.3f})")

# %%
# Without attribute labels
# ------------------------
# Given the head instead of ``spurious``, the probe takes the direction that
# separates, within each class, the head's mistakes from its successes
# (sign-aligned across classes). Here the head's mistakes are the other
# colour's samples, so the direction is nearly the colour's. It also carries
# some digit signal (mistakes are atypical digits): on balanced data, which
# needs no removal, removing it costs accuracy.
free = SpuriousProbe(head=data.head).fit(data.X_val, data.y_val)
cos = float(free.concept_directions_[0] @ probe.concept_directions_[0])
free_fixed = make_pipeline(FrozenEstimator(free),
                           LogisticRegression(class_weight="balanced", max_iter=5000))
print(f"mistake direction: cosine with the colour direction {cos:.3f}")
free_fixed.fit(data.X_train, data.y_train)
print(f"  retrained on training data: test WGA {wga(free_fixed):.3f}")
balanced = LogisticRegression(class_weight="balanced", max_iter=5000)
balanced.fit(data.X_val, data.y_val)
free_fixed.fit(data.X_val, data.y_val)
print(f"  retrained on validation data: test WGA {wga(free_fixed):.3f} (without the "
      f"removal {wga(balanced):.3f})")

# %%
# Three classes, three colours
# ----------------------------
# One direction per colour (one versus the rest), orthonormalised: two
# dimensions for three colours. Pooled over classes the colour is gone, but a
# linear model still reads it *within* a class, where it moves the embeddings
# along a class-specific direction; ``pooling="span"`` removes every class's
# own direction.
if not FAST:
    data3 = make_waterdigits(n_classes=3, rho=0.95, random_state=0)
    erm3 = ERMClassifier(head=data3.head).fit(data3.X_train, data3.y_train)
    score = worst_group_accuracy(data3.y_test, erm3.predict(data3.X_test),
                                 spurious=data3.spurious_test)
    print(f"3 classes, ERM: test WGA {score:.3f}")
    c0 = data3.y_test == 0
    for pooling in ("mean", "span"):
        p3 = SpuriousProbe(pooling=pooling).fit(data3.X_val, data3.y_val,
                                                spurious=data3.spurious_val)
        m3 = make_pipeline(FrozenEstimator(p3),
                           LogisticRegression(class_weight="balanced", max_iter=5000))
        m3.fit(data3.X_train, data3.y_train)
        Zc = p3.transform(data3.X_test)[c0]
        within = cross_val_predict(LogisticRegression(max_iter=5000), Zc,
                                   data3.spurious_test[c0], cv=3,
                                   method="predict_proba")
        auc = roc_auc_score(data3.spurious_test[c0], within, multi_class="ovr")
        score = worst_group_accuracy(data3.y_test, m3.predict(data3.X_test),
                                     spurious=data3.spurious_test)
        print(f"pooling={pooling!r}: {p3.directions_.shape[0]} directions, colour AUC "
              f"within class 0 after removal {auc:.3f}, test WGA {score:.3f}")

# %%
# Plots
# -----
try:
    import matplotlib.pyplot as plt
except ImportError:  # plotting is optional
    plt = None

if plt is not None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    probe.plot_concept_scores(data.X_test, data.y_test, data.spurious_test, ax=axes[0])
    axes[0].set_title("Concept scores on test, per (class, colour)")
    lam_axis = [max(lam, 1e-3) for lam, *_ in curve]
    axes[1].semilogx(lam_axis, [c[2] for c in curve], "o-", label="validation WGA")
    axes[1].semilogx(lam_axis, [c[3] for c in curve], "s-", label="test WGA")
    relative = [c[1] / max(curve[0][1], 1e-12) for c in curve]
    axes[1].semilogx(lam_axis, relative, ":", color="grey",
                     label="|W v| / |W v| at lam=0")
    axes[1].set_xlabel("lam (0 drawn at 1e-3)")
    axes[1].set_ylim(0, 1.05)
    axes[1].legend(fontsize=8)
    axes[1].set_title("RR-ClArC")
    fig.tight_layout()
    fig.savefig("concept_directions.png", dpi=100)
    plt.close(fig)

# %%
# Back into the CNN
# -----------------
# The projection is affine, so the pipeline (probe, then logistic regression)
# folds into one linear layer that replaces the model's last one.
import torch

from sklearn_spur import replace_head

model = replace_head(data.model, data.head_name, fixed)
with torch.no_grad():
    logits = model(torch.from_numpy(data.images_test))
same = (logits.argmax(1).numpy() == fixed.predict(data.X_test)).mean()
print(f"the patched CNN agrees with the pipeline on {same:.1%} of the test images")
