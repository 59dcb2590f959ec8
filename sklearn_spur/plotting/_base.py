"""Shared helpers of the displays: matplotlib on demand, axes, legends."""

from __future__ import annotations


def pyplot():
    """``matplotlib.pyplot``, or an ImportError that says how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised without matplotlib
        raise ImportError(
            "Plotting needs matplotlib: pip install 'sklearn-spur[plot]'."
        ) from exc
    return plt


def new_axes(ax, figsize=(8, 3.5)):
    """``(ax, created)``: ``ax``, or the axes of a new figure (``created=True``)."""
    if ax is None:
        _, ax = pyplot().subplots(figsize=figsize)
        return ax, True
    return ax, False


def finish(ax, created):
    """Lay out a figure the display made, so that the outside legend fits in it."""
    if created:
        ax.figure.tight_layout()


def legend_outside(ax, **kwargs):
    """The legend to the right of the axes, where it cannot hide any data.

    A figure made by a display is laid out to make room for it (``finish``); on
    axes you pass, call ``fig.tight_layout()`` or save with
    ``bbox_inches="tight"``.
    """
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                     fontsize=8, frameon=False, **kwargs)
