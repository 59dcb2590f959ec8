"""The per-group section and the recommendation of a diagnosis (JSON values)."""

from __future__ import annotations

import numpy as np

from .._cli_output import _label, _number
from .._core.groups import encode_groups
from ._code import export_code, fit_code

__all__ = ["group_section", "recommendation"]


def _summary(model, rep, ci):
    return {"model": model, "mean_accuracy": _number(rep.mean_accuracy),
            "mean_accuracy_ci": list(ci["mean_accuracy"]),
            "adjusted_accuracy": (None if rep.adjusted_accuracy is None
                                  else _number(rep.adjusted_accuracy)),
            "worst_group_accuracy": _number(rep.worst_group_accuracy),
            "worst_group_accuracy_ci": list(ci["worst_group_accuracy"]),
            "worst_group": [_label(v) for v in rep.worst_group],
            "gap": _number(rep.mean_accuracy - rep.worst_group_accuracy)}


def _interval(row):
    return None if np.isnan(row).any() else [float(row[0]), float(row[1])]


def group_section(head, recommended, name, source, train):
    """Every group's accuracy under the head and the recommended method.

    ``head`` and ``recommended`` are ``(GroupReport, intervals)`` on the
    evaluation split; ``source`` says where its groups come from.
    """
    (rep, ci), (rep_r, ci_r) = head, recommended
    shares = {}
    if train.spurious is not None and source != "inferred":
        g = encode_groups(train.y, train.spurious)
        shares = {g.label(k): n / len(train.y) for k, n in enumerate(g.counts.tolist())}
    by_group = dict(zip(rep_r.groups, range(len(rep_r.groups))))
    rows = []
    for k, group in enumerate(rep.groups):  # groups, not samples
        r = by_group.get(group)
        share = shares.get(group)
        rows.append({
            "class": _label(group[0]), "spurious": _label(group[1]),
            "count": int(rep.counts[k]),
            "train_share": None if share is None else float(share),
            "head_accuracy": _number(rep.accuracies[k]),
            "head_ci": _interval(ci["groups"][k]),
            "recommended_accuracy": None if r is None else _number(
                rep_r.accuracies[r]),
            "recommended_ci": None if r is None else _interval(ci_r["groups"][r]),
        })
    return {"source": source, "rows": rows,
            "summary": [_summary("original head", rep, ci),
                        _summary(f"{name} (recommended)", rep_r, ci_r)]}


def _fmt(x):
    return "n/a" if x is None else f"{x:.3f}"


def recommendation(rows, best, setting, deployed, fitted, seed):
    """The recommendation: which method, the evidence, the code to apply it."""
    chosen = rows[best]
    others = sorted((r for i, r in enumerate(rows) if i != best),
                    key=lambda r: -(r["selection_score"] or 0.0))
    erm = next(r for r in rows if r["key"] == "erm")
    wga = [-np.inf if r["worst_group_accuracy"] is None else r["worst_group_accuracy"]
           for r in rows]
    top = [r["name"] for r, w in zip(rows, wga) if w == max(wga)]
    where = ("the test split" if setting["evaluation"] == "test"
             else "the held-out half of the validation split")
    groups = {"spurious_test": "true groups", "spurious_val": "true groups",
              "inferred": "inferred groups"}[setting["evaluation_groups"]]
    text = [(f"Deploy {chosen['name']}. It has the best selection score, the "
             f"{setting['selection']} on the held-out half of the validation split "
             f"({setting['n_select']} samples): {_fmt(chosen['selection_score'])}")]
    if others:
        text[-1] += (f", against {others[0]['name']} "
                     f"{_fmt(others[0]['selection_score'])}")
    text[-1] += f" and the original head's {_fmt(erm['selection_score'])}."
    lo, hi = chosen["worst_group_accuracy_ci"]
    text.append(
        f"On {where} ({groups}) its worst-group accuracy is "
        f"{_fmt(chosen['worst_group_accuracy'])} (95 % interval {_fmt(lo)} to "
        f"{_fmt(hi)}) against the original head's {_fmt(erm['worst_group_accuracy'])}"
        f", at mean accuracy {_fmt(chosen['mean_accuracy'])} (the head: "
        f"{_fmt(erm['mean_accuracy'])}).")
    if chosen["name"] not in top:
        text.append(f"On that split {', '.join(top)} scores higher "
                    f"({_fmt(max(wga))}); the choice does not look at it.")
    if not setting["annotated"]:
        text.append("No group label was used to fit or to choose it.")
    if setting["evaluation"] != "test":
        text.append("Without a test split these numbers come from the data the "
                    "choice was made on: expect less on new data.")
    text.append("`recommended_` is this method refitted on the whole validation "
                "split, ready for `predict` and `replace_head`.")
    cls = type(fitted[chosen["key"]])
    code = fit_code(chosen["key"], cls.__name__, cls, seed)
    return {
        "key": chosen["key"], "name": chosen["name"],
        "criterion": setting["selection"],
        "selection_score": chosen["selection_score"],
        "best_on_evaluation": top,
        "matches_best_on_evaluation": chosen["name"] in top,
        "deployed": None if deployed is None else _summary(
            f"{chosen['name']} (refitted)", *deployed),
        "paragraph": " ".join(text),
        "code": code,
        "export_code": export_code(),
    }
