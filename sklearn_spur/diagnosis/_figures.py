"""The report's figures as base64 PNG, drawn from :meth:`Diagnosis.to_dict`.

matplotlib is imported here only (an optional dependency); figures are drawn
on ``matplotlib.figure.Figure`` objects, never through pyplot's state, so the
report renders under any backend and leaves no figure open.
"""

from __future__ import annotations

import base64
import io

import numpy as np

from ..metrics import GroupReport
from ..plotting import StrengthCurveDisplay, plot_group_accuracies

__all__ = ["figures", "png_base64", "thumbnail_strip"]


def png_base64(fig):
    """The figure as base64 PNG text."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _new(width, height):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot()


def _report(rows, which):
    groups = [tuple(tuple(v) if isinstance(v, list) else v  # JSON lists: tuples
                    for v in (r["class"], r["spurious"])) for r in rows]
    acc = np.array([np.nan if r[f"{which}_accuracy"] is None
                    else r[f"{which}_accuracy"] for r in rows])
    worst = int(np.nanargmin(acc))
    return GroupReport(groups=groups, counts=np.array([r["count"] for r in rows]),
                       accuracies=acc, mean_accuracy=float(np.nanmean(acc)),
                       worst_group_accuracy=float(acc[worst]),
                       worst_group=groups[worst])


def _groups(doc):
    rows = doc["groups"]["rows"]
    names = [s["model"] for s in doc["groups"]["summary"]]
    fig, ax = _new(max(6.0, 0.9 * len(rows) + 3), 3.4)
    plot_group_accuracies({names[0]: _report(rows, "head"),
                           names[1]: _report(rows, "recommended")}, ax=ax)
    for container, which in zip(ax.containers, ("head", "recommended")):
        for bar, r in zip(container, rows):  # bars, not samples
            ci = r[f"{which}_ci"]
            if ci is not None:
                x = bar.get_x() + bar.get_width() / 2
                ax.plot([x, x], ci, color="black", lw=1)
    return fig


def _methods(doc):
    rows = doc["methods"]
    fig, ax = _new(7.0, 0.35 * len(rows) + 1.2)
    y = np.arange(len(rows))[::-1]
    wga = np.array([np.nan if r["worst_group_accuracy"] is None
                    else r["worst_group_accuracy"] for r in rows])
    ci = np.array([r["worst_group_accuracy_ci"] for r in rows])
    err = np.abs(np.vstack([wga - ci[:, 0], ci[:, 1] - wga]))
    colors = ["tab:green" if r["recommended"] else "tab:blue" for r in rows]
    ax.barh(y, np.nan_to_num(wga), xerr=err, color=colors, capsize=3,
            label="worst-group accuracy")
    ax.plot([r["mean_accuracy"] for r in rows], y, "kD", ms=4, label="mean accuracy")
    ax.set_yticks(y, [r["name"] + (" *" if r["recommended"] else "") for r in rows])
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("accuracy on the evaluation split (* recommended)")
    # outside the axes: inside, it hid the bars or markers of the bottom rows
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              frameon=False)
    return fig


def _strength(doc):
    c = doc["strength_curve"]
    fig, ax = _new(7.0, 3.2)
    StrengthCurveDisplay(c["strength"], c["worst_group_accuracy"],
                         c["mean_accuracy"]).plot(ax=ax)
    ax.set_title(c["method"])
    return fig


def _histogram(doc):
    h = doc["shortcut"]["histogram"]
    edges = np.asarray(h["edges"])
    fig, ax = _new(7.0, 3.2)
    for g in h["groups"]:  # groups, not samples
        ax.stairs(g["counts"], edges, label=f"y={g['class']}, s={g['spurious']}")
    ax.set_xlabel(f"score along {doc['shortcut']['concepts'][0]['concept']}")
    ax.set_ylabel("samples")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


def thumbnail_strip(images, scale_to=48):
    """Images ``(n, H, W[, C])`` or ``(n, C, H, W)`` side by side, as base64 PNG."""
    from matplotlib.image import imsave

    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 4 and images.shape[1] in (1, 3, 4) and images.shape[-1] not in (
            1, 3, 4):
        images = images.transpose(0, 2, 3, 1)  # channels first -> last
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    lo, hi = np.nanmin(images), np.nanmax(images)
    images = (images - lo) / (hi - lo if hi > lo else 1.0)
    factor = max(1, int(np.ceil(scale_to / images.shape[1])))
    images = images.repeat(factor, axis=1).repeat(factor, axis=2)
    pad = np.ones((images.shape[1], 4) + images.shape[3:])
    strip = np.concatenate([part for img in images for part in (img, pad)][:-1], axis=1)
    buf = io.BytesIO()
    imsave(buf, np.clip(strip, 0, 1), format="png", cmap="gray")
    return base64.b64encode(buf.getvalue()).decode("ascii")


_DRAW = {"groups": _groups, "methods": _methods, "strength": _strength,
         "histogram": _histogram}


def figures(doc, thumbnails):
    """``{name: [base64 PNG, ...]}`` for every figure of the report."""
    out = {name: [png_base64(draw(doc))] for name, draw in _DRAW.items()
           if (name != "strength" or doc["strength_curve"] is not None)
           and (name != "histogram" or doc["shortcut"]["kind"] == "probe")}
    if thumbnails is not None:
        out["thumbnails"] = [thumbnail_strip(t) for t in thumbnails]
    return out
