"""
Several classes, several attribute values, several attributes
=============================================================

Nothing in sklearn-spur assumes two classes or a binary attribute. Here:

- WaterDigits with **3 classes and 3 background colours**
  (:func:`~sklearn_spur.datasets.make_waterdigits` with ``n_classes=3``):
  9 groups, colour ``k`` going with class ``k`` for 95 % of the training
  images;
- then **two attribute columns** at once: the colour and the stroke thickness
  of the handwritten digit (a real property of each digit: its total ink in
  :func:`sklearn.datasets.load_digits`, split at the median of its class).
  ``spurious`` becomes an ``(n_samples, 2)`` array, a group is
  ``(class, colour, thickness)``: 18 groups.

Every method and metric takes both forms unchanged. Set
``SKLEARN_SPUR_FAST=1`` for a quick run (fewer DFR fits, a coarser C grid
and strength grid).
"""

# %%
# Three classes, three colours
# ----------------------------
import os

import numpy as np
from sklearn.datasets import load_digits

from sklearn_spur import (
    DFRClassifier,
    ERMClassifier,
    SingleWeightEditor,
    SpuriousProbe,
    group_report,
    strength_grid,
    worst_group_accuracy,
)
from sklearn_spur.datasets import make_waterdigits
from sklearn_spur.plotting import GroupAccuracyDisplay

FAST = os.environ.get("SKLEARN_SPUR_FAST") == "1"
n_fits = 3 if FAST else 20
c_grid = (1.0, 0.1, 0.01) if FAST else DFRClassifier().Cs
data = make_waterdigits(n_classes=3, rho=0.95, random_state=0)
print(f"{data.X_train.shape[0]} training embeddings of {data.X_train.shape[1]} units; "
      f"colour == class for {np.mean(data.y_train == data.spurious_train):.2f} of them")

erm = ERMClassifier(head=data.head).fit(data.X_train, data.y_train)
report_erm = group_report(data.y_test, erm.predict(data.X_test),
                          spurious=data.spurious_test)
print("ERM (the CNN's head) on test:")
print(report_erm)

# %%
# Three methods on nine groups
# ----------------------------
# DFR: group-balanced retraining on validation (9 groups, each downsampled to
# the smallest). SpuriousProbe: one one-vs-rest direction per colour, of rank
# 2 (three colour means span a plane). SingleWeightEditor: each class has 3
# sub-classes (one per colour); the fictitious one is the colour the CNN's
# head associates with the class; strength chosen on validation along its
# path (one fit).
dfr = DFRClassifier(Cs=c_grid, n_fits=n_fits, random_state=0).fit(
    data.X_val, data.y_val, spurious=data.spurious_val)

probe = SpuriousProbe().fit(data.X_val, data.y_val, spurious=data.spurious_val)
print(f"probe: {len(probe.concepts_)} concepts {probe.concepts_}, "
      f"{probe.directions_.shape[0]} orthonormal directions, separability "
      f"{np.round(probe.separability_, 3)}")

editor = SingleWeightEditor(head=data.head, strength=0.0).fit(
    data.X_train, data.y_train, spurious=data.spurious_train)
grid = strength_grid(9 if FAST else 25)
val_wga = [worst_group_accuracy(data.y_val, p, spurious=data.spurious_val)
           for p in editor.strength_path(data.X_val, grid)]
editor.set_params(strength=float(grid[int(np.argmax(val_wga))]))
print(f"editor: sub-classes {editor.subclasses_}; fictitious {editor.fictitious_}; "
      f"strength {editor.strength:.3f}")

reports = {"ERM": report_erm}
for name, model in [("DFR", dfr), ("SingleWeightEditor", editor)]:
    reports[name] = group_report(data.y_test, model.predict(data.X_test),
                                 spurious=data.spurious_test)
for name, rep in reports.items():
    print(f"{name:>20}: test mean accuracy {rep.mean_accuracy:.3f}, "
          f"worst-group accuracy {rep.worst_group_accuracy:.3f}")

disp = GroupAccuracyDisplay(reports).plot()
disp.figure_.set_size_inches(10, 3.5)
disp.figure_.savefig("multiclass_group_accuracy.png", dpi=80, bbox_inches="tight")

# %%
# Two attribute columns: colour and stroke thickness
# --------------------------------------------------
# The thickness of every image's digit: its total ink, above or below the
# median of its class (computed on all digits, so the same digit always
# gets the same value).
digits = load_digits()
ink = digits.images.reshape(len(digits.images), -1).sum(1)
digit_class = digits.target * 3 // 10
thick_all = np.zeros(len(ink), dtype=int)
for c in range(3):
    members = digit_class == c
    thick_all[members] = ink[members] > np.median(ink[members])


def attributes(split):
    """(colour, thickness) of every image of a split, shape (n, 2)."""
    return np.c_[data[f"spurious_{split}"], thick_all[data[f"digit_index_{split}"]]]


S_val, S_test = attributes("val"), attributes("test")
report2 = group_report(data.y_test, erm.predict(data.X_test), spurious=S_test)
print(f"ERM over {len(report2.groups)} groups (class, colour, thickness): "
      f"worst-group accuracy {report2.worst_group_accuracy:.3f}")

# DFR balances all 18 groups (with the C chosen above on the 9 colour
# groups); the probe finds directions for each column.
dfr2 = DFRClassifier(C=dfr.C_, n_fits=n_fits, random_state=0).fit(
    data.X_val, data.y_val, spurious=S_val)
probe2 = SpuriousProbe().fit(data.X_val, data.y_val, spurious=S_val)
print(f"probe on two columns: concepts {probe2.concepts_}, separability "
      f"{np.round(probe2.separability_, 3)}")
models = [("ERM", erm), ("DFR (colour)", dfr), ("DFR (colour, thickness)", dfr2)]
for name, model in models:
    pred = model.predict(data.X_test)
    rep = group_report(data.y_test, pred, spurious=S_test)
    wga9 = worst_group_accuracy(data.y_test, pred, spurious=data.spurious_test)
    print(f"{name:>24}: WGA over 18 groups {rep.worst_group_accuracy:.3f}, "
          f"over the 9 colour groups {wga9:.3f}")
