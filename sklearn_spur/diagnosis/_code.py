"""The code a recommendation shows: how to fit the method as the diagnosis did,
and how to write it back into the torch model.

One snippet per method of the command line's registry
(:mod:`sklearn_spur._cli_methods`, whose recipes the diagnosis runs); a method
the registry fits with its generic recipe gets the generic snippet.
"""

from __future__ import annotations

from ..utils.discovery import requirements

__all__ = ["export_code", "fit_code"]

_BEST_STRENGTH = """\
def val_wga(st):
    pred = editor.set_params(strength=st).predict(X_val)
    return worst_group_accuracy(y_val, pred, spurious=spurious_val, missing="ignore")

est = editor.set_params(strength=max(strength_grid(25), key=val_wga))"""

_SNIPPETS = {
    "erm": """\
from sklearn_spur import ERMClassifier

est = ERMClassifier(head=head).fit(X_train, y_train)  # the original head""",
    "dfr": """\
from sklearn_spur import DFRClassifier

est = DFRClassifier(random_state={seed}).fit(X_val, y_val, spurious=spurious_val)""",
    "editor": """\
from sklearn_spur import SingleWeightEditor
from sklearn_spur.methods.editor import strength_grid
from sklearn_spur.metrics import worst_group_accuracy

editor = SingleWeightEditor(head=head).fit(X_train, y_train, spurious=spurious_train)

""" + _BEST_STRENGTH,
    "editor-free": """\
from sklearn_spur import SingleWeightEditor

est = SingleWeightEditor(head=head, random_state={seed}).fit(X_val, y_val)""",
    "probe": """\
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn_spur import SpuriousProbe

probe = SpuriousProbe().fit(X_val, y_val, spurious=spurious_val)
est = make_pipeline(FrozenEstimator(probe), LogisticRegression(
    class_weight="balanced", max_iter=2000)).fit(X_train, y_train)""",
    "rrclarc": """\
from sklearn.frozen import FrozenEstimator
from sklearn_spur import RRClArCClassifier, SpuriousProbe
from sklearn_spur.metrics import worst_group_accuracy

probe = FrozenEstimator(SpuriousProbe().fit(X_val, y_val, spurious=spurious_val))
fits = [RRClArCClassifier(probe=probe, head=head, lam=lam, class_weight="balanced")
        .fit(X_train, y_train) for lam in (0.1, 1.0, 10.0, 100.0)]
est = max(fits, key=lambda e: worst_group_accuracy(
    y_val, e.predict(X_val), spurious=spurious_val, missing="ignore"))""",
}


def fit_code(key, cls_name, cls, seed):
    """The snippet that fits method ``key`` (class ``cls``) as the diagnosis did."""
    if key in _SNIPPETS:
        return _SNIPPETS[key].format(seed=seed)
    needs = requirements(cls)
    params = cls().get_params()
    args = ", ".join(f"{k}={v}" for k, v in (("head", "head"), ("random_state", seed))
                     if k in params and v is not None)
    if needs["group_labels"] == "required":
        data = "X_val, y_val, spurious=spurious_val"
    else:
        data = "X_train, y_train" if needs["fit_on"] == "training" else "X_val, y_val"
    return (f"from sklearn_spur import {cls_name}\n\n"
            f"est = {cls_name}({args}).fit({data})")


def export_code():
    """Writing the fitted head back into the torch model."""
    return ("from sklearn_spur import replace_head\n\n"
            "# \"fc\": the name of the model's last nn.Linear (e.g. \"classifier.3\")\n"
            "model = replace_head(model, \"fc\", est)")
