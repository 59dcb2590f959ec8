"""
The whole workflow on raw images: extract, report, probe, edit, tune, patch
===========================================================================

From a trained CNN and its raw images to a patched CNN whose last layer no
longer follows the background colour:

1. :class:`~sklearn_spur.TorchFeatureExtractor` turns the CNN into a
   scikit-learn transformer (images -> penultimate embeddings);
2. :func:`~sklearn_spur.group_report` shows the damage: accuracy per
   (class, colour) group;
3. :class:`~sklearn_spur.SpuriousProbe` confirms that the colour is a
   direction of embedding space that the head reads;
4. :class:`~sklearn_spur.SingleWeightEditor` splits every class into
   sub-classes by colour and lowers the bias of the fictitious one;
5. ``GridSearchCV`` chooses the edit ``strength`` by worst-group accuracy
   (metadata routing on, so that ``spurious`` reaches the scorer) over a
   pipeline that starts from **raw images**;
6. :func:`~sklearn_spur.replace_head` writes the edited head into a copy of the
   CNN, and we check that the patched CNN's predictions on raw test images are
   the estimator's.

The data are WaterDigits (:func:`~sklearn_spur.datasets.make_waterdigits`):
real handwritten digits on a background colour that agrees with the class for
95 % of the training images; the CNN was trained on them by ERM (cached on
disk after the first call). Set ``SKLEARN_SPUR_FAST=1`` for a coarser grid.
"""

# %%
# The trained CNN and its raw images
# ----------------------------------
import os

import numpy as np
import sklearn
import torch
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from sklearn_spur import (
    SingleWeightEditor,
    SpuriousProbe,
    TorchFeatureExtractor,
    group_report,
    replace_head,
    strength_grid,
    worst_group_scorer,
)
from sklearn_spur.datasets import make_waterdigits

FAST = os.environ.get("SKLEARN_SPUR_FAST") == "1"
data = make_waterdigits(n_classes=2, rho=0.95, random_state=0)
model = data.model
print("images:", data.images_train.shape, "head:", data.head_name, "=", model.fc)

# %%
# 1. Embeddings from raw images
# -----------------------------
# ``layer="fc"`` with ``capture="input"`` takes what enters the head: the
# penultimate embedding. The result is the dataset's own ``X_*`` arrays.
extractor = TorchFeatureExtractor(model, layer="fc", progress=False, memory="auto")
Z_train = extractor.fit_transform(data.images_train)
Z_val = extractor.transform(data.images_val)
Z_test = extractor.transform(data.images_test)
print("embeddings:", Z_train.shape, Z_train.dtype,
      "| largest difference to the dataset's X_test:",
      f"{np.abs(Z_test - data.X_test).max():.1e}")

# %%
# 2. The report: ERM leans on the colour
# --------------------------------------
# The CNN's own predictions on the balanced test split, per group
# ``(class, colour)``. The groups whose colour disagrees with the class are
# the minority groups of the training data.
with torch.no_grad():
    erm_test = model(torch.from_numpy(data.images_test)).argmax(1).numpy()
before = group_report(data.y_test, erm_test, spurious=data.spurious_test)
print(before)

# %%
# 3. The probe: the colour is one direction the head reads
# --------------------------------------------------------
# Fitted on the balanced validation split, where colour and class are
# independent. ``separability_`` is the ROC AUC of the concept scores for the
# colour; ``head_sensitivity`` is ``W v``, how much the head's logit moves
# along that direction.
probe = SpuriousProbe().fit(Z_val, data.y_val, spurious=data.spurious_val)
print(f"colour direction: separability (ROC AUC) {probe.separability_[0]:.3f}; "
      f"head sensitivity W.v = {probe.head_sensitivity(data.head).ravel()[0]:+.2f}")

from sklearn_spur.plotting import ConceptScoreDisplay

disp = ConceptScoreDisplay.from_estimator(probe, Z_test, data.y_test,
                                          spurious=data.spurious_test)
disp.ax_.set_title("Concept scores (colour direction), test split")
disp.figure_.savefig("workflow_concept_scores.png", dpi=80, bbox_inches="tight")

# %%
# 4 and 5. Edit, and choose the strength by worst-group accuracy
# --------------------------------------------------------------
# The pipeline starts from raw images. The editor is fitted on the
# spuriously correlated training images (where the fictitious sub-classes
# carry the colour prior) and scored on the validation images: one
# predefined split. With metadata routing on, ``spurious`` goes to the
# editor's ``fit`` and to the scorer (the extractor requests nothing); the
# extractor caches embeddings, so the CNN runs once per image set, and the
# editor fits its sub-class head once for the whole strength grid.
images = np.concatenate([data.images_train, data.images_val])
y = np.concatenate([data.y_train, data.y_val])
s = np.concatenate([data.spurious_train, data.spurious_val])
n_train = len(data.y_train)
split = [(np.arange(n_train), np.arange(n_train, len(y)))]

pipe = make_pipeline(TorchFeatureExtractor(model, layer="fc", progress=False, memory="auto"),
                     SingleWeightEditor(head=data.head))
grid = {"singleweighteditor__strength": strength_grid(9 if FAST else 25)}
with sklearn.config_context(enable_metadata_routing=True):
    search = GridSearchCV(pipe, grid, scoring=worst_group_scorer, cv=split, refit=False)
    search.fit(images, y, spurious=s)
    best = search.best_params_["singleweighteditor__strength"]
    pipe.set_params(singleweighteditor__strength=best)
    pipe.fit(data.images_train, data.y_train, spurious=data.spurious_train)
print(f"best strength {best:.3f} (bias shift {-np.log1p(-best):.2f}), "
      f"validation WGA {search.best_score_:.3f}")

from sklearn_spur.plotting import StrengthCurveDisplay

curve = StrengthCurveDisplay.from_search(
    search, param_name="singleweighteditor__strength")
curve.ax_.set_title("Validation worst-group accuracy against strength")
curve.figure_.savefig("workflow_strength_curve.png", dpi=80, bbox_inches="tight")

# %%
# 6. Patch the CNN and verify it on raw images
# --------------------------------------------
# The edited head (sub-class outputs pooled by log-sum-exp per class) replaces
# ``model.fc`` in a copy of the CNN; the original model is untouched.
editor = pipe[-1]
patched = replace_head(model, data.head_name, editor)
with torch.no_grad():
    patched_test = patched(torch.from_numpy(data.images_test)).argmax(1).numpy()
pipe_test = pipe.predict(data.images_test)
print("patched CNN on raw images == pipeline predictions:",
      bool(np.array_equal(data.classes[patched_test], pipe_test)))
assert np.array_equal(data.classes[patched_test], pipe_test)

after = group_report(data.y_test, pipe_test, spurious=data.spurious_test)
print(f"test WGA: CNN {before.worst_group_accuracy:.3f} -> patched CNN "
      f"{after.worst_group_accuracy:.3f}; mean accuracy {before.mean_accuracy:.3f} -> "
      f"{after.mean_accuracy:.3f}")

# %%
# Accuracy of every group, before and after
# -----------------------------------------
from sklearn_spur.plotting import GroupAccuracyDisplay

bars = GroupAccuracyDisplay({"CNN (ERM)": before, "patched CNN": after}).plot()
bars.figure_.savefig("workflow_group_accuracy.png", dpi=80, bbox_inches="tight")
