"""JTT at the last layer: upweight the original head's mistakes, refit."""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.utils._param_validation import Interval

from .._core.template import (
    MAX_ITER,
    TOL,
    LastLayerClassifier,
    RefitProblem,
    head_start,
)

__all__ = ["JTTClassifier"]

JTT_UPWEIGHTS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)


class JTTClassifier(LastLayerClassifier):
    """Just Train Twice at the last layer: refit with the head's mistakes upweighted.

    Fit on held-out embeddings with class labels only. The samples the
    original head misclassifies (JTT's error set, mostly the minority groups
    the shortcut gets wrong) weigh ``upweight``, the others 1; an L2 logistic
    regression is refit from the original head on the weighted data.

    Parameters
    ----------
    head : nn.Linear, (W, b[, classes]) tuple, fitted classifier or None, default=None
        The trained last layer, whose mistakes form the error set. ``None`` fits
        an ERM head on ``X`` first (a weak stand-in: it makes few mistakes there).
    upweight : float or None, default=None
        Weight of the error set (the paper uses 20-100); 1 is plain ERM.
        ``None`` tunes it over ``upweights`` (see ``selection``).
    upweights : array-like of float, default=(1, 2, 5, 10, 20, 50, 100)
        Candidates for ``upweight`` when it is None.
    C : float, default=1.0
        Inverse L2 regularisation strength (scikit-learn's convention, scaled by
        the total sample weight).
    selection : {"inferred", "worst_class"}, default="inferred"
        How the candidates are compared, each fitted on one half of ``X`` and
        scored on the other, without group labels: worst accuracy over
        pseudo-groups inferred with the head (a clear per-class mixture, else
        its right / wrong split; see :func:`~sklearn_spur.infer_groups`), or
        worst-class accuracy. With
        ``spurious`` (routed to ``fit``) the true groups are used instead.
    max_iter : int, default=2000
        Maximum solver iterations.
    tol : float, default=1e-4
        Solver tolerance (max-norm of the gradient).
    random_state : int, RandomState instance or None, default=None
        Controls the selection halves.
    verbose : int, default=0
        1: a progress bar (tqdm, on stderr) of the candidate fits; 2: it stays.

    Attributes
    ----------
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        Refit weights.
    intercept_ : ndarray of shape (1,) or (n_classes,)
        Refit biases.
    classes_ : ndarray of shape (n_classes,)
        Class labels (the head's).
    error_set_ : ndarray of shape (n_samples,) of bool
        The fitting samples the head got wrong.
    upweight_ : float
        The upweight used (chosen, or given).
    selection_scores_ : dict
        ``{upweight: held-out score}`` of every candidate (empty when given).
    n_iter_ : int
        Solver iterations.
    n_features_in_ : int
        Number of embedding dimensions.

    See Also
    --------
    AFRClassifier : Smooth weights from the head's confidence instead of a hard set.

    References
    ----------
    .. [1] E. Z. Liu, B. Haghgoo, A. S. Chen, A. Raghunathan, P. W. Koh, S. Sagawa,
       P. Liang, C. Finn, "Just Train Twice: Improving Group Robustness without
       Training Group Information", ICML 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_spur import JTTClassifier
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 400); s = np.where(rng.random(400) < .9, y, 1 - y)
    >>> X = np.c_[y + rng.normal(0, .8, 400), s + rng.normal(0, .1, 400)]
    >>> head = (np.array([[0.5, 4.0]]), np.array([-2.2]))  # leans on the attribute
    >>> jtt = JTTClassifier(head=head, upweight=20).fit(X, y)
    >>> int(jtt.error_set_.sum()) > 0
    True
    """

    _uses_head = "required"
    _label_free = True
    _parameter_constraints: dict = {
        **LastLayerClassifier._parameter_constraints,
        "head": "no_validation",
        **LastLayerClassifier._selection_constraints,
        **LastLayerClassifier._verbose_constraints,
        "upweight": [Interval(Real, 1, None, closed="left"), None],
        "upweights": ["array-like"],
        "C": [Interval(Real, 0, None, closed="neither")],
        "random_state": ["random_state"],
    }
    __metadata_request__fit = {"spurious": False}

    def __init__(self, *, head=None, upweight=None, upweights=JTT_UPWEIGHTS, C=1.0,
                 selection="inferred", max_iter=MAX_ITER, tol=TOL, random_state=None,
                 verbose=0):
        self.head = head
        self.upweight = upweight
        self.upweights = upweights
        self.C = C
        self.selection = selection
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose

    def _check_context(self, ctx):
        super()._check_context(ctx)
        if self.upweight is None:
            ups = np.asarray(self.upweights, dtype=np.float64).ravel()
            if ups.size == 0 or not np.all(np.isfinite(ups) & (ups >= 1)):
                raise ValueError(
                    f"JTTClassifier: upweights must hold finite values >= 1; got "
                    f"{ups.tolist()[:10]}. Pass a grid, or fix `upweight=`.")

    def _selection_grid(self, ctx):
        if self.upweight is not None:
            return [{"upweight": float(self.upweight)}]
        return [{"upweight": float(u)}
                for u in np.asarray(self.upweights, dtype=np.float64).ravel()]

    def _refit_problem(self, ctx, upweight):
        wrong = ctx.evidence.wrong
        weights = np.where(wrong, upweight, 1.0).astype(ctx.X.dtype)
        W0, b0 = head_start(ctx)
        return RefitProblem(weights=weights, C=self.C, coef_init=W0, intercept_init=b0)

    def _after_fit(self, ctx):
        self.error_set_ = ctx.evidence.wrong
        self.upweight_ = self.best_params_["upweight"]
