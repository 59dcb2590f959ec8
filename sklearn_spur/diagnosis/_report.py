"""What :func:`~sklearn_spur.diagnose` returns: sections, the fitted choice, exports."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from ._layout import markdown

__all__ = ["Diagnosis"]


class Diagnosis:
    """What :func:`~sklearn_spur.diagnose` found, and the method it recommends.

    Not built directly: returned by :func:`~sklearn_spur.diagnose`. Every
    section is JSON values (``to_dict``); ``to_markdown`` and ``to_html``
    render the same numbers.

    Attributes
    ----------
    setting_ : dict
        The splits used (``evaluation``: ``"test"`` or the validation split's
        held-out half; ``evaluation_groups``: where its groups come from),
        their sizes, the selection criterion, the methods not run and why, the
        warnings the methods raised, and the wall time (``seconds``).
    groups_ : dict
        ``rows``: every group of the evaluation split with its count, training
        share, and the original head's and the recommended method's accuracy
        with bootstrap 95 % intervals; ``summary``: mean, adjusted mean and
        worst-group accuracy with intervals and the mean-to-worst gap.
    shortcut_ : dict
        ``kind="probe"``: the annotated attribute's separability (ROC AUC) and
        the head's sensitivity along its direction; ``kind="slices"``: the
        slices found without labels, with size, accuracy and typical rows.
    methods_ : list of dict
        One row per method run: selection score, worst-group accuracy and mean
        accuracy on the evaluation split with intervals, adjusted mean, fit
        time, and whether it is the recommended one.
    strength_curve_ : dict or None
        The editor's worst-group and mean accuracy against its strength.
    recommendation_ : dict
        ``key``, ``name``, ``paragraph`` (the evidence), ``code`` (fitting it)
        and ``export_code`` (writing it back with ``replace_head``),
        ``best_on_evaluation`` and ``matches_best_on_evaluation``.
    recommended_ : estimator
        The recommended method refitted on the whole validation split, ready
        for ``predict`` and :func:`~sklearn_spur.replace_head`.

    See Also
    --------
    diagnose : Builds it.
    """

    def __init__(self, sections, recommended, *, thumbnails=None):
        self._sections = sections
        self.recommended_ = recommended
        self._thumbnails = thumbnails

    setting_ = property(lambda self: self._sections["setting"])
    groups_ = property(lambda self: self._sections["groups"])
    shortcut_ = property(lambda self: self._sections["shortcut"])
    methods_ = property(lambda self: self._sections["methods"])
    strength_curve_ = property(lambda self: self._sections["strength_curve"])
    recommendation_ = property(lambda self: self._sections["recommendation"])

    def to_dict(self):
        """The whole report as JSON-serialisable values (a copy).

        Returns
        -------
        report : dict
            Keys ``setting``, ``groups``, ``shortcut``, ``methods``,
            ``strength_curve`` and ``recommendation`` (the attributes of the
            same names without the underscore). ``json.dumps`` takes it as is.
        """
        return json.loads(json.dumps(self._sections))

    def to_markdown(self, path=None):
        """The report as Markdown: the same sections and numbers, no figures.

        Parameters
        ----------
        path : str or path-like, default=None
            Also write it there (UTF-8).

        Returns
        -------
        text : str
        """
        text = markdown(self.to_dict())
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def to_html(self, path=None):
        """The report as one self-contained HTML file.

        Figures (matplotlib) and thumbnails are inline base64 PNG images, the
        style is inline: the file opens offline, anywhere. Without matplotlib
        the figures are left out, with a note saying so.

        Parameters
        ----------
        path : str or path-like, default=None
            Write it there (UTF-8).

        Returns
        -------
        html : str
        """
        from ._html import render

        html = render(self.to_dict(), copy.deepcopy(self._thumbnails))
        if path is not None:
            Path(path).write_text(html, encoding="utf-8")
        return html

    def __repr__(self):
        rec = self.recommendation_
        head = self.groups_["summary"][0]
        return (f"<Diagnosis: recommends {rec['name']}; original head WGA "
                f"{head['worst_group_accuracy']:.3f}, {len(self.methods_)} methods "
                f"compared on {self.setting_['evaluation']}>")
