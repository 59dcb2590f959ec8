"""Progress bars: the one place that opens a tqdm bar (imported only when shown).

The last-layer template counts its fits on a bar it keeps in the fit context
(``ctx.shared["progress"]``) while ``fit`` runs, for the estimators that have
a ``verbose`` parameter: every candidate of a selection on every fold (a
batch of candidates solved together advances it by the batch), and every
head fit. :func:`expect` announces fits (and says what they are),
:func:`tick` counts them done. With ``verbose=0`` the bar is a silent
stand-in and tqdm is not imported. The feature extractor and
``make_waterdigits`` open their bars here too.
"""

from __future__ import annotations

__all__ = ["VERBOSE_CONSTRAINTS", "expect", "progress_bar", "tick"]

#: The ``verbose`` parameter of the estimators that show a bar (merged, never retyped).
VERBOSE_CONSTRAINTS: dict = {"verbose": ["verbose"]}


class _Silent:
    """What :func:`progress_bar` returns when nothing is shown: every call a no-op."""

    n = 0
    total = None

    def update(self, n=1):
        self.n += n

    def set_postfix_str(self, s="", refresh=True):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def refresh(self):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def progress_bar(verbose, *, total=None, desc=None, unit="it", leave=None, **kwargs):
    """A tqdm bar on stderr when ``verbose`` is truthy, else a silent stand-in.

    Parameters
    ----------
    verbose : bool or int
        0 / False: nothing is shown (and tqdm is not imported). 1: a bar while
        the work runs, cleared at the end. 2 or more: the bar stays.
    total, desc, unit : as for tqdm.
    leave : bool, default=None
        Keep the bar when done; None: ``verbose >= 2``.
    **kwargs
        Passed to tqdm (``initial``, ``delay``...).

    Returns
    -------
    bar : tqdm or a silent stand-in with the same ``update``,
        ``set_postfix_str``, ``total`` and context-manager protocol.
    """
    if not verbose:
        return _Silent()
    from tqdm.auto import tqdm

    leave = int(verbose) >= 2 if leave is None else leave
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, **kwargs)


def tick(ctx, n=1):
    """Count ``n`` fits done on the fit context's bar (if any)."""
    bar = ctx.shared.get("progress")
    if bar is not None:
        bar.update(n)


def expect(ctx, n, status=None):
    """Announce ``n`` more fits on the fit context's bar (and what they are)."""
    bar = ctx.shared.get("progress")
    if bar is not None:
        bar.total = (bar.total or 0) + n
        if status:
            bar.set_postfix_str(status, refresh=False)
        bar.refresh()
