"""The methods the command line runs: every estimator of the registry, fitted as
its guide says (a recipe) or as it declares (the generic recipe)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.base import ClassifierMixin

__all__ = ["METHODS", "NEEDS_TRAIN_SPURIOUS", "NEEDS_VAL_SPURIOUS", "Method"]


@dataclass
class Method:
    """How the CLI fits one method: ``fit(train, val, head, seed) -> estimator``."""

    name: str
    fit: Callable
    needs: str  # what it needs, shown in the table
    uses_head: bool = True  # reads the trained head (--head, or the ERM stand-in)


def _erm(train, val, head, seed):
    from .methods import ERMClassifier

    return ERMClassifier(head=head).fit(train.X, train.y)


def _dfr(train, val, head, seed):
    from .methods.dfr import DFRClassifier

    return DFRClassifier(random_state=seed).fit(val.X, val.y, spurious=val.spurious)


def clone_fitted(estimator, **params):
    """A copy of a fitted estimator with some parameters changed (no refit)."""
    import copy

    return copy.deepcopy(estimator).set_params(**params)


def _best_on_val(candidates, val):
    """The fitted candidate with the highest worst-group accuracy on validation."""
    from .metrics import worst_group_accuracy

    scores = [worst_group_accuracy(val.y, est.predict(val.X), spurious=val.spurious,
                                   missing="ignore",
                                   classes=getattr(est, "classes_", None))
              for est in candidates]
    return candidates[int(np.argmax(scores))]


def _probe(train, val, head, seed):
    # Probe fitted on held-out data with groups, frozen; balanced LR on train.
    from sklearn.frozen import FrozenEstimator
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from .concepts.probe import SpuriousProbe

    probe = SpuriousProbe().fit(val.X, val.y, spurious=val.spurious)
    return make_pipeline(FrozenEstimator(probe), LogisticRegression(
        class_weight="balanced", max_iter=2000)).fit(train.X, train.y)


def _rrclarc(train, val, head, seed):
    # Head refit on train with the penalty along the frozen probe's directions;
    # lam chosen by worst-group accuracy on validation.
    from sklearn.frozen import FrozenEstimator

    from . import RRClArCClassifier, SpuriousProbe

    probe = FrozenEstimator(SpuriousProbe().fit(val.X, val.y, spurious=val.spurious))
    return _best_on_val([
        RRClArCClassifier(probe=probe, head=head, lam=lam, class_weight="balanced")
        .fit(train.X, train.y) for lam in (0.1, 1.0, 10.0, 100.0)], val)


def _editor(train, val, head, seed):
    # Sub-class head fitted on train with the attribute; strength tuned on val
    # (changing it needs no refit).
    from .methods.editor import SingleWeightEditor, strength_grid

    editor = SingleWeightEditor(head=head).fit(train.X, train.y,
                                               spurious=train.spurious)
    candidates = [clone_fitted(editor, strength=st) for st in strength_grid(25)]
    return _best_on_val(candidates, val)


def _editor_free(train, val, head, seed):
    # No attribute anywhere: sub-classes inferred from the head on held-out data,
    # the default strength (their frequency prior).
    from .methods.editor import SingleWeightEditor

    return SingleWeightEditor(head=head, random_state=seed).fit(val.X, val.y)


def _tuner(train, val, head, seed):
    # No attribute anywhere: identification and retraining on held-out data.
    from .methods.neurontune import NeuronTuner

    return NeuronTuner(head=head, random_state=seed).fit(val.X, val.y)


# How the guides tune a method, where its defaults are not the whole story (the
# registry supplies every method; one it has no recipe for runs the generic one).
RECIPES = {
    "ERMClassifier": [("erm", "ERM", _erm, "train labels")],
    "DFRClassifier": [("dfr", "DFR", _dfr, "val groups")],
    "SpuriousProbe": [("probe", "SpuriousProbe+LR", _probe, "val groups")],
    "RRClArCClassifier": [("rrclarc", "RRClArC", _rrclarc, "val groups")],
    "SingleWeightEditor": [
        ("editor", "SingleWeightEditor", _editor, "train+val groups"),
        ("editor-free", "SingleWeightEditor-free", _editor_free, "val labels")],
    "NeuronTuner": [("neurontune", "NeuronTuner", _tuner, "val labels")],
}


def _generic(cls):
    """Fit ``cls`` as it declares (registry): the split, the head, the labels."""
    from .utils.discovery import requirements

    needs = requirements(cls)

    def fit(train, val, head, seed):
        params = cls().get_params()
        est = cls(**{k: v for k, v in (("head", head), ("random_state", seed))
                     if k in params and v is not None})
        if needs["group_labels"] == "required":
            return est.fit(val.X, val.y, spurious=val.spurious)
        split = train if needs["fit_on"] == "training" else val
        return est.fit(split.X, split.y)

    label = ("val groups" if needs["group_labels"] == "required"
             else "train labels" if needs["fit_on"] == "training" else "val labels")
    return fit, label


def _methods():
    """Every method of the registry, keyed as the command line names them."""
    from .utils.discovery import all_estimators, requirements

    methods = {}
    for name, cls in all_estimators(include_torch=False):
        uses_head = requirements(cls)["head"] != "none"
        if name in RECIPES:
            for key, title, fit, needs in RECIPES[name]:
                methods[key] = Method(title, fit, needs, uses_head)
        elif issubclass(cls, ClassifierMixin):
            fit, needs = _generic(cls)
            key = name.lower().removesuffix("classifier")
            methods[key] = Method(name.removesuffix("Classifier"), fit, needs,
                                  uses_head)
    first = [k for k in ("erm", "dfr") if k in methods]
    return {k: methods[k] for k in first + sorted(set(methods) - set(first))}


METHODS = _methods()
NEEDS_VAL_SPURIOUS = {k for k, m in METHODS.items() if "val groups" in m.needs
                      or "train+val" in m.needs}
NEEDS_TRAIN_SPURIOUS = {k for k, m in METHODS.items() if "train+val" in m.needs}


