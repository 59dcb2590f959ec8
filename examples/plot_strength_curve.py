"""
Choosing the edit strength from the worst-group-accuracy curve
==============================================================

:class:`~sklearn_spur.SingleWeightEditor` splits every class into sub-classes
(class x background colour here), fits one output per sub-class, and lowers
the bias of each *fictitious* sub-class (the one carrying the spurious
colour) by ``-log(1 - strength)``. ``strength`` acts at prediction time, so
a whole curve of worst-group accuracy (WGA) against strength costs one fit.

We fit the sub-class head on the spuriously correlated **training** split,
where the fictitious sub-classes dominate (95 % of every class has its
"own" colour), draw the WGA-vs-strength curve on validation, pick the
strength there, and check it on test. Then the same choice with
``GridSearchCV``, and the edited head written back into the CNN.

Set ``SKLEARN_SPUR_FAST=1`` for a quick run (coarser grid).
"""

# %%
# Data and the unedited baseline
# ------------------------------
# WaterDigits: digits on a coloured background, embedded by a small CNN
# trained by ERM (cached on disk after the first call).
import os

import numpy as np

from sklearn_spur import (
    ERMClassifier,
    SingleWeightEditor,
    strength_grid,
    worst_group_accuracy,
)
from sklearn_spur.datasets import make_waterdigits

FAST = os.environ.get("SKLEARN_SPUR_FAST") == "1"
data = make_waterdigits(n_classes=2, rho=0.95, random_state=0)


def wga(split, pred):
    """Worst-group accuracy of ``pred`` on a split."""
    return worst_group_accuracy(data[f"y_{split}"], pred,
                                spurious=data[f"spurious_{split}"])


erm = ERMClassifier(head=data.head).fit(data.X_train, data.y_train)
print(f"ERM (the CNN's own head): test WGA {wga('test', erm.predict(data.X_test)):.3f}")

# %%
# The sub-class head, fitted on the training split
# ------------------------------------------------
# Warm-started from the CNN's head. Its fictitious outputs' biases carry the
# spurious prior, about ``log(0.95 / 0.05) = 2.9`` above the core ones.
editor = SingleWeightEditor(head=data.head, strength=0.0)
editor.fit(data.X_train, data.y_train, spurious=data.spurious_train)
print("outputs:", editor.subclasses_)
print("fictitious sub-class of each class:", editor.fictitious_)
print("prior log-odds per fictitious output:",
      editor.prior_shift_[editor.fictitious_mask_].round(2))

# %%
# The curve
# ---------
# :func:`~sklearn_spur.strength_grid` is even in the bias shift
# ``-log(1 - strength)``, so it is fine near the prior's log-odds (strength
# 0.95), where an even grid in strength would have one or two points.
# :meth:`~sklearn_spur.SingleWeightEditor.strength_path` evaluates every
# strength from one pass over the embeddings.
strengths = strength_grid(17 if FAST else 41, max_shift=8.0)
shifts = -np.log1p(-strengths)
curve = {}
for split in ("val", "test"):
    path = editor.strength_path(data[f"X_{split}"], strengths)
    curve[split] = np.array([wga(split, pred) for pred in path])
    curve[split + "_mean"] = (path == data[f"y_{split}"]).mean(axis=1)

best = int(np.argmax(curve["val"]))
print(" strength  shift  val WGA  test WGA  test mean")
for i in range(len(strengths)):
    mark = "  <- best on val" if i == best else ""
    print(f"   {strengths[i]:.4f}  {shifts[i]:5.2f}   {curve['val'][i]:.3f}     "
          f"{curve['test'][i]:.3f}     {curve['test_mean'][i]:.3f}{mark}")

editor.set_params(strength=strengths[best])  # no refit
print(f"chosen strength {strengths[best]:.4f} (shift {shifts[best]:.2f}): test WGA "
      f"{wga('test', editor.predict(data.X_test)):.3f}, against "
      f"{curve['test'][0]:.3f} unedited")
print("the edited weights:", editor.edited_weights_)

# %%
# Without a validation curve, ``strength="prior"`` applies each fictitious
# output's own prior log-odds:
prior = editor.set_params(strength="prior").predict(data.X_test)
print(f"strength='prior': test WGA {wga('test', prior):.3f}")
editor.set_params(strength=strengths[best])

# %%
# Plot
# ----
try:
    import matplotlib.pyplot as plt
except ImportError:  # plotting is optional
    plt = None

if plt is not None:
    fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
    ax.plot(shifts, curve["val"], "o-", ms=3, label="validation WGA")
    ax.plot(shifts, curve["test"], "s-", ms=3, label="test WGA")
    ax.plot(shifts, curve["test_mean"], ":", color="grey", label="test mean accuracy")
    ax.axvline(np.log(0.95 / 0.05), color="k", lw=0.8, ls="--",
               label="prior log-odds log(0.95/0.05)")
    ax.axvline(shifts[best], color="C3", lw=0.8, label="chosen on validation")
    ax.set_xlabel("bias shift of the fictitious outputs, -log(1 - strength)")
    ax.set_ylabel("accuracy")
    top = ax.secondary_xaxis(
        "top", functions=(lambda lam: -np.expm1(-np.asarray(lam)),
                          lambda s: -np.log1p(-np.minimum(np.asarray(s), 1 - 1e-12))))
    top.set_xticks([0, 0.5, 0.8, 0.9, 0.95, 0.99])
    top.set_xlabel("strength")
    ax.set_ylim(0, 1)
    # outside the axes: inside, it would hide part of a curve
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.savefig("strength_curve.png", dpi=100)
    plt.close(fig)

# %%
# The same choice by grid search
# ------------------------------
# With metadata routing on, ``GridSearchCV`` routes ``spurious`` to ``fit``
# and to the worst-group scorer. The editor caches its sub-class head, so
# the search fits it once per fold, not once per strength and fold. Here the
# search runs on the training split itself (folds of it play validation).
import sklearn
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from sklearn_spur import worst_group_scorer

with sklearn.config_context(enable_metadata_routing=True):
    search = GridSearchCV(
        SingleWeightEditor(head=data.head),
        {"strength": list(strength_grid(10 if FAST else 20))},
        scoring=worst_group_scorer,
        cv=StratifiedKFold(3 if FAST else 5, shuffle=True, random_state=0),
    )
    search.fit(data.X_train, data.y_train, spurious=data.spurious_train)
print(f"GridSearchCV: strength {search.best_params_['strength']:.4f}, "
      f"test WGA {wga('test', search.predict(data.X_test)):.3f}")

# %%
# Back into the CNN
# -----------------
# The edited head is a linear layer with one output per sub-class followed by
# a log-sum-exp per class; it replaces the model's last layer.
import torch

from sklearn_spur import replace_head

model = replace_head(data.model, data.head_name, editor)
print(model.fc)
with torch.no_grad():
    logits = model(torch.from_numpy(data.images_test))
same = (logits.argmax(1).numpy() == editor.predict(data.X_test)).mean()
print(f"the patched CNN agrees with the estimator on {same:.1%} of the test images")
