"""The report's content as a list of blocks, rendered as Markdown or HTML.

A block is ``("h1" | "h2" | "p" | "code", text)``, ``("table", header, rows)``
or ``("figure", name, caption)``. A table cell is ``(text, key)``: ``key`` is
the path of the number in :meth:`Diagnosis.to_dict` (``"methods/0/mean_accuracy"``)
and ``text`` is that number formatted by :func:`fmt`, so both renderings show
the same numbers as the dictionary, and the HTML marks every cell with its key.
"""

from __future__ import annotations

__all__ = ["blocks", "fmt", "lookup"]


def fmt(value):
    """A value as the report prints it."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        if len(value) == 2 and all(isinstance(v, float) for v in value):
            return f"{value[0]:.3f} to {value[1]:.3f}"
        return ", ".join(fmt(v) for v in value)
    return str(value)


def lookup(doc, key):
    """The value at ``key`` (``"a/0/b"``) of the dictionary ``doc``."""
    for part in key.split("/"):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def _cells(doc, prefix, names):
    return [(fmt(lookup(doc, f"{prefix}/{n}")), f"{prefix}/{n}") for n in names]


def _text(value):
    return (fmt(value), None)


def _setting(doc):
    s = doc["setting"]
    what = {"spurious_test": "the test split's annotations (never used to choose)",
            "spurious_val": "the validation split's annotations",
            "inferred": "inferred: each class split by the original head's error "
                        "direction, fitted on the fitting half"}[s["evaluation_groups"]]
    text = (f"Evaluation split: {s['evaluation']}; its groups: {what}. The methods "
            f"are fitted on half of the validation split and chosen by "
            f"{s['selection']} on the other half.")
    names = ["annotated", "evaluation", "evaluation_groups", "n_train", "n_val",
             "n_fit", "n_select", "n_evaluation", "n_boot", "random_state"]
    rows = [[_text(n), (fmt(s[n]), f"setting/{n}")] for n in names]
    return [("p", text), ("table", ["setting", "value"], rows)]


def _groups(doc):
    g = doc["groups"]
    header = ["class", "spurious", "count", "train share", "head accuracy",
              "head 95 % interval", "recommended accuracy",
              "recommended 95 % interval"]
    rows = [_cells(doc, f"groups/rows/{i}",
                   ["class", "spurious", "count", "train_share", "head_accuracy",
                    "head_ci", "recommended_accuracy", "recommended_ci"])
            for i in range(len(g["rows"]))]
    summary = [_cells(doc, f"groups/summary/{i}",
                      ["model", "mean_accuracy", "mean_accuracy_ci",
                       "adjusted_accuracy", "worst_group_accuracy",
                       "worst_group_accuracy_ci", "gap"])
               for i in range(len(g["summary"]))]
    return [
        ("h2", "Per-group accuracy"),
        ("p", ("Accuracy of every group on the evaluation split, with bootstrap 95 % "
              "intervals. The adjusted mean weights the group accuracies by the "
              "training split's group shares (n/a without spurious_train); the "
              "gap is the mean accuracy minus the worst group's.")),
        ("table", header, rows),
        ("table", ["model", "mean accuracy", "mean 95 % interval",
                   "adjusted mean accuracy", "worst-group accuracy",
                   "worst-group 95 % interval", "gap"], summary),
        ("figure", "groups", "Accuracy per group, with 95 % intervals."),
    ]


def _shortcut(doc):
    sc = doc["shortcut"]
    out = [("h2", "Shortcut evidence")]
    if sc["kind"] == "probe":
        out.append(("p", ("A SpuriousProbe fitted on the fitting half: how well its "
                         "direction v separates the attribute on held-out data "
                         "(ROC AUC within class; 0.5 = not at all) and how much each "
                         "class logit moves along it (W v, and its cosine with the "
                         "class's weight row).")))
        rows = []
        for i, c in enumerate(sc["concepts"]):
            for k in range(len(c["sensitivity"])):
                p = f"shortcut/concepts/{i}"
                rows.append([(c["concept"], f"{p}/concept"),
                             (fmt(c["separability"]), f"{p}/separability"),
                             *_cells(doc, f"{p}/sensitivity/{k}",
                                     ["class", "w_dot_v", "cosine"])])
        out.append(("table", ["concept", "separability (AUC)", "class", "W v",
                              "cosine"], rows))
        out.append(("figure", "histogram",
                    "Scores along the concept direction, per group."))
        return out
    out.append(("p", ("No annotated attribute: every class of the validation split "
                     "is split into slices (infer_groups), worst first, each with "
                     "the original head's accuracy on it and the validation rows of "
                     "its most typical samples (nearest to its mean embedding).")))
    rows = [_cells(doc, f"shortcut/slices/{i}",
                   ["class", "slice", "size", "accuracy", "typical"])
            for i in range(len(sc["slices"]))]
    out.append(("table", ["class", "slice", "size", "head accuracy",
                          "typical samples (rows of X_val)"], rows))
    out.append(("figure", "thumbnails", "Typical samples of each slice."))
    return out


def _methods(doc):
    names = ["name", "needs", "selection_score", "worst_group_accuracy",
             "worst_group_accuracy_ci", "mean_accuracy", "mean_accuracy_ci",
             "adjusted_accuracy", "fit_seconds", "recommended"]
    rows = [_cells(doc, f"methods/{i}", names) for i in range(len(doc["methods"]))]
    out = [("h2", "Method comparison"),
           ("p", ("Every method the available labels allow, fitted as its guide "
                 "says on the fitting half, scored for selection on the other "
                 "half, evaluated on the evaluation split.")),
           ("table", ["method", "needs", "selection score", "worst-group accuracy",
                      "WGA 95 % interval", "mean accuracy", "mean 95 % interval",
                      "adjusted mean", "fit seconds", "recommended"], rows),
           ("figure", "methods", ("Worst-group accuracy with 95 % intervals, and "
                                 "mean accuracy."))]
    skipped = doc["setting"]["skipped"]
    if skipped:
        out.append(("p", "Not run: " + "; ".join(
            f"{k} ({why})" for k, why in skipped.items()) + "."))
    curve = doc["strength_curve"]
    if curve is not None:
        out.append(("h2", f"Strength curve of {curve['method']}"))
        out.append(("p", ("Worst-group and mean accuracy on the evaluation split "
                         "against the edit strength (no refit); for information, "
                         "not used to choose.")))
        out.append(("figure", "strength", "The editor's strength curve."))
        out.append(("table", ["strength", "worst-group accuracy", "mean accuracy"],
                    [[(fmt(curve[n][i]), f"strength_curve/{n}/{i}")
                      for n in ("strength", "worst_group_accuracy", "mean_accuracy")]
                     for i in range(len(curve["strength"]))]))
    return out


def blocks(doc):
    """The report as blocks, from :meth:`Diagnosis.to_dict`'s dictionary."""
    rec = doc["recommendation"]
    out = [("h1", "Spurious-correlation diagnosis"), *_setting(doc),
           ("h2", f"Recommendation: {rec['name']}"), ("p", rec["paragraph"]),
           ("code", rec["code"]), ("code", rec["export_code"])]
    if rec["deployed"] is not None:
        out.append(("table", ["model", "mean accuracy", "worst-group accuracy",
                              "worst-group 95 % interval"],
                    [_cells(doc, "recommendation/deployed",
                            ["model", "mean_accuracy", "worst_group_accuracy",
                             "worst_group_accuracy_ci"])]))
    out += _groups(doc) + _shortcut(doc) + _methods(doc)
    if doc["setting"]["warnings"]:
        out.append(("h2", "Warnings"))
        out += [("p", w) for w in doc["setting"]["warnings"]]
    return out


def markdown(doc):
    """The blocks as Markdown (figures left out: they are in the HTML report)."""
    lines = []
    for block in blocks(doc):
        kind = block[0]
        if kind in ("h1", "h2"):
            lines += ["#" * int(kind[1]) + " " + block[1], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "code":
            lines += ["```python", block[1], "```", ""]
        elif kind == "table":
            header, rows = block[1], block[2]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(t.replace("|", "\\|") for t, _ in row) + " |"
                      for row in rows]
            lines.append("")
    return "\n".join(lines)
