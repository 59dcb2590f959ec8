"""
Precomputed embeddings from ``.npz`` files
==========================================

Most users extract embeddings once (a ResNet's 2048 pooled features, a BERT's
[CLS] vector) and keep them on disk. sklearn-spur reads them with
:func:`~sklearn_spur.load_embeddings`: ``.npy`` for embeddings alone, ``.npz`` with
the keys ``X``, ``y`` and ``spurious``, memory-mapped so a 50k x 2048 matrix is not
read into memory before it is used.

Here the files are written from the built-in WaterDigits benchmark; with your own,
start at "Load them back". The same files work from the shell::

    sklearn-spur evaluate --train train.npz --val val.npz --test test.npz
"""

# %%
# Write the three splits
# ----------------------
import os
import tempfile

import matplotlib

matplotlib.use("Agg")

from sklearn_spur import (
    DFRClassifier,
    ERMClassifier,
    group_report,
    load_embeddings,
    save_embeddings,
)
from sklearn_spur.datasets import make_waterdigits
from sklearn_spur.plotting import GroupAccuracyDisplay

b = make_waterdigits(random_state=0)
folder = tempfile.mkdtemp()
for split in ("train", "val", "test"):
    save_embeddings(os.path.join(folder, f"{split}.npz"), b[f"X_{split}"],
                    y=b[f"y_{split}"], spurious=b[f"spurious_{split}"])
print(sorted(os.listdir(folder)))

# %%
# Load them back
# --------------
# The embeddings come back memory-mapped; labels and attribute as arrays.
train = load_embeddings(os.path.join(folder, "train.npz"), require=("y",))
val = load_embeddings(os.path.join(folder, "val.npz"), require=("y", "spurious"))
test = load_embeddings(os.path.join(folder, "test.npz"), require=("y", "spurious"))
print(type(train.X).__name__, train.X.shape, train.X.dtype)

# %%
# ERM against DFR, per group
# --------------------------
# Without the original head at hand, ERM is a logistic regression on the
# training embeddings; DFR retrains on group-balanced validation data.
erm = ERMClassifier().fit(train.X, train.y)
dfr = DFRClassifier(random_state=0).fit(val.X, val.y, spurious=val.spurious)
before = group_report(test.y, erm.predict(test.X), spurious=test.spurious)
after = group_report(test.y, dfr.predict(test.X), spurious=test.spurious)
print("ERM\n", before, "\n\nDFR\n", after, sep="")

# %%
# The same, as a picture
# ----------------------
disp = GroupAccuracyDisplay({"ERM": before, "DFR": after}).plot()
disp.figure_.tight_layout()
disp.figure_.savefig(os.path.join(folder, "groups.png"))
