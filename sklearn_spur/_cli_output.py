"""What the ``sklearn-spur`` command prints: warnings once each, the table, JSON."""

from __future__ import annotations

import contextlib
import json
import math
import sys
import warnings

__all__ = ["WarningLog", "print_table", "results_json"]

_HIDDEN = (DeprecationWarning, PendingDeprecationWarning)
_MAX_CHARS = 400


class WarningLog:
    """Collects warnings and prints each distinct one once, as one line on stderr.

    The methods and the metrics warn about what a user must know (groups missing
    from a split, classes the model cannot predict, solvers that did not
    converge); the command shows them, concisely, instead of hiding them.
    """

    def __init__(self, stream=None):
        self.stream = stream
        self.shown: list[str] = []
        self._seen: set = set()

    @contextlib.contextmanager
    def capture(self, context: str):
        """Record the warnings of the block; print the new ones when it ends."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                self._emit(caught, context)

    def _emit(self, caught, context):
        stream = sys.stderr if self.stream is None else self.stream
        for w in caught:
            if issubclass(w.category, _HIDDEN):
                continue
            lines = str(w.message).strip().splitlines()
            text = lines[0] if lines else w.category.__name__
            if len(text) > _MAX_CHARS:
                text = text[:_MAX_CHARS - 3] + "..."
            key = (w.category.__name__, text)
            if key in self._seen:
                continue
            self._seen.add(key)
            line = f"{w.category.__name__} ({context}): {text}"
            self.shown.append(line)
            print(f"sklearn-spur: warning: {line}", file=stream)


def print_table(rows, out):
    """The human-readable table: method, what it needs, mean acc, WGA, fit time."""
    print(f"{'method':<26}{'needs':<18}{'mean acc':>9}{'WGA':>8}{'fit s':>8}", file=out)
    for r in rows:
        print(f"{r['name']:<26}{r['needs']:<18}{r['mean_accuracy']:9.3f}"
              f"{r['worst_group_accuracy']:8.3f}{r['fit_seconds']:8.2f}", file=out)


def _number(x):
    x = float(x)
    return None if math.isnan(x) else x


def _label(v):
    return list(v) if isinstance(v, tuple) else v


def report_dict(report) -> dict:
    """A GroupReport as JSON-ready values (empty groups have accuracy null)."""
    return {
        "mean_accuracy": _number(report.mean_accuracy),
        "worst_group_accuracy": _number(report.worst_group_accuracy),
        "worst_group": [_label(v) for v in report.worst_group],
        "groups": [{"class": _label(g[0]), "spurious": _label(g[1]), "count": int(n),
                    "accuracy": _number(a)}
                   for g, n, a in zip(report.groups, report.counts, report.accuracies)],
    }


def results_json(command, rows, reports, *, version, skipped, warnings_shown,
                 inputs, head=None) -> str:
    """The ``--json`` document: one entry per method, with its per-group table."""
    doc = {
        "command": command,
        "version": version,
        "inputs": inputs,
        "head": head,
        "results": [{"method": r["key"], "name": r["name"], "needs": r["needs"],
                     "fit_seconds": r["fit_seconds"], **report_dict(reports[r["name"]])}
                    for r in rows],
        "skipped": skipped,
        "warnings": warnings_shown,
    }
    return json.dumps(doc, indent=2, default=str)
