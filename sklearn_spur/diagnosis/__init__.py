"""From a trained head to a report: :func:`diagnose` and its :class:`Diagnosis`.

Per-group accuracy with bootstrap intervals, the evidence of a shortcut, every
applicable method compared, and a recommendation with the code to deploy it;
rendered as self-contained HTML, Markdown or a JSON-ready dictionary.
"""

from ._diagnose import diagnose
from ._report import Diagnosis

__all__ = ["Diagnosis", "diagnose"]
