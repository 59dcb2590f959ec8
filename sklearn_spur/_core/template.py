"""The last-layer template: one ``fit`` for every method that refits a linear head.

In the spirit of imbalanced-learn's ``SamplerMixin`` (one public method, one
private hook), :class:`LastLayerClassifier` owns ``fit``:

1. validation of ``X``, ``y`` and the routed ``spurious`` (:meth:`_validate_fit_inputs`);
2. a :class:`FitContext`: classes, encoded groups when ``spurious`` is given,
   the resolved original head and its evidence on the data (probability of the
   true class, mistakes, confidence);
3. the method's hook, :meth:`~LastLayerClassifier._refit_problem`, which states
   the refit as a :class:`RefitProblem` (sample weights, penalty, a pull toward
   the original head, masked units, start point);
4. one shared solve (:func:`solve`), with one convergence warning and the one
   place that scales the penalty;
5. an optional selection among candidate hyperparameters
   (:meth:`~LastLayerClassifier._selection_grid`) by worst-group or
   worst-class accuracy on held-out halves;
6. storing ``coef_`` and ``intercept_``.

A new method is a subclass that declares its parameters and writes
``_refit_problem`` (and, when it tunes itself, ``_selection_grid``).
"""

from __future__ import annotations

from dataclasses import replace
from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from .base import LinearSpurClassifier
from .groups import encode_groups, reject_unexpected_fit_params
from .heads import resolve_head
from .progress import VERBOSE_CONSTRAINTS, expect, progress_bar, tick
from .refit import (
    FitContext,
    RefitProblem,
    _stack,
    _stacks,
    class_weights,
    head_start,
    solve,
)
from .selection import (
    predict_index,
    stratified_halves,
    subsample,
    worst_stratum_accuracy,
)

__all__ = [
    "MAX_ITER",
    "TOL",
    "FitContext",
    "LastLayerClassifier",
    "RefitProblem",
    "class_weights",
    "head_start",
    "solve",
]

#: Solver parameters every refitting estimator shares (merged, never retyped).
SOLVER_CONSTRAINTS: dict = {
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "tol": [Interval(Real, 0, None, closed="neither")],
}
#: The label-free selection switch of the methods that tune without group labels.
SELECTION_CONSTRAINTS: dict = {
    "selection": [StrOptions({"inferred", "worst_class"})],
}
#: Defaults that agree across estimators.
MAX_ITER, TOL = 2000, 1e-4


class LastLayerClassifier(LinearSpurClassifier):
    """Template of the methods that end in one refit linear layer.

    Subclasses set the class-level declarations and implement
    :meth:`_refit_problem`; those that tune themselves also implement
    :meth:`_selection_grid`. ``fit`` is written once, here.

    Class attributes
    ----------------
    _needs_group_labels : bool
        ``spurious`` is required to fit (DFR).
    _uses_head : {"required", "optional", "no"}
        Whether the method reads the original head (its evidence or weights).
    _label_free : bool
        Without ``spurious``, neither fitting nor selection reads group labels.
    _fit_on : {"validation", "training", "training or validation"}
        The split the method is meant to be fitted on.

    :func:`sklearn_spur.utils.discovery.all_estimators` reads these
    declarations; tests, the command line and the benchmarks read it.
    """

    _needs_group_labels = False
    _uses_head = "optional"
    _label_free = True
    _fit_on = "validation"
    _parameter_constraints: dict = {**SOLVER_CONSTRAINTS}
    #: Merged by the methods that tune without group labels (``selection=``).
    _selection_constraints: dict = SELECTION_CONSTRAINTS
    #: Merged by the methods whose fits take long enough to show a progress bar.
    _verbose_constraints: dict = VERBOSE_CONSTRAINTS

    # ------------------------------------------------------------ template
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, *, spurious=None, **unexpected):
        """Fit the method's head.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.
        y : array-like of shape (n_samples,)
            Class labels.
        spurious : array-like of shape (n_samples,) or (n_samples, n_attributes), \
default=None
            Spurious attribute, where the method uses it. Routed by metadata
            routing; never needed at predict time.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        who = type(self).__name__
        reject_unexpected_fit_params(
            who, unexpected,
            takes="X, y and spurious" if self._uses_spurious() else "X and y")
        X, y, s = self._validate_fit_inputs(
            X, y, spurious, spurious_required=self._needs_group_labels)
        ctx = self._fit_context(X, y, s)
        self.classes_ = ctx.classes
        # ``verbose`` (where a method declares it): a bar counting the fits
        with progress_bar(getattr(self, "verbose", 0), total=0, desc=who,
                          unit="fit") as bar:
            ctx.shared["progress"] = bar
            self.coef_, self.intercept_, self.n_iter_ = self._fit_head(ctx)
            self._after_fit(ctx)
            bar.total = bar.n  # fewer fits than announced (a stop, a cache hit)
            ctx.shared.pop("progress")
        return self

    def _after_fit(self, ctx):
        """Store method-specific fitted attributes (hook; nothing by default)."""

    def _uses_spurious(self):
        """Whether ``fit`` reads the routed attribute (the class's default request)."""
        from ..utils.discovery import requirements

        return requirements(type(self))["group_labels"] != "none"

    def _fit_context(self, X, y, s):
        who = type(self).__name__
        head = None
        if self._uses_head == "required" or (
                self._uses_head == "optional" and getattr(self, "head", None) is not None):
            head = resolve_head(getattr(self, "head", None), X, y, who=who,
                                random_state=getattr(self, "random_state", None))
            classes = head.classes
        else:
            classes = np.unique(y)
        y_idx = np.searchsorted(classes, y)
        groups = None if s is None else encode_groups(y, s)
        rs = check_random_state(getattr(self, "random_state", None))
        rng = np.random.default_rng(rs.randint(np.iinfo(np.int32).max))
        ctx = FitContext(X, y, y_idx, classes, s, groups, head, rng)
        self._check_context(ctx)
        return ctx

    def _check_context(self, ctx):
        """Refuse data a refit cannot honour: a class the head knows but y lacks."""
        present = np.bincount(ctx.y_idx, minlength=ctx.n_classes)
        if not present.all():
            missing = ctx.classes[present == 0].tolist()
            raise ValueError(
                f"{type(self).__name__}: y has no sample of classes {missing[:10]} that "
                "the head predicts; a refit head would never predict them. Fit on data "
                "that holds every class.")

    def _fit_head(self, ctx):
        """Selection (when a grid is given), then the final refit. Returns coef, b, it."""
        params, init = self._select(ctx)
        self.best_params_ = params
        expect(ctx, 1, "final fit" if ctx.stage == "final" else "fit on a half")
        problem = self._refit_problem(ctx, **params)
        if problem is None:  # the method keeps the original head
            return ctx.head.coef.copy(), ctx.head.intercept.copy(), 0
        if (init is not None and isinstance(problem, RefitProblem)
                and problem.coef_init is None):
            problem = replace(problem, coef_init=init[0], intercept_init=init[1])
        return self._solve_head(ctx, problem)

    def _solve_head(self, ctx, problem):
        """Solve one problem (or a list, combined); returns coef, intercept, n_iter."""
        problems = problem if isinstance(problem, list) else [problem]
        fits = [solve(ctx, p, max_iter=self.max_iter, tol=self.tol,
                      who=type(self).__name__) for p in problems]
        coef, intercept = self._finish(ctx, *self._combine(ctx, fits))
        tick(ctx)
        return coef, intercept, max(fit.n_iter for fit in fits)

    def _combine(self, ctx, fits):
        """One head from the solved problems: the average of the one batch (default)."""
        (fit,) = fits
        return fit.coef.mean(axis=0), fit.intercept.mean(axis=0)

    def _finish(self, ctx, coef, intercept):
        """Map the solved head back (e.g. undo a transformed operand)."""
        return coef, intercept

    # ----------------------------------------------------------- selection
    #: Cross-fit both halves (2) or fit on one, score on the other (1).
    _selection_folds = 1
    #: Select on a class-stratified subsample of at most this many samples.
    _selection_max_samples = None

    def _selection_grid(self, ctx):
        """Candidate hyperparameters (a list of dicts), or None to skip selection."""
        return None

    def _selection_strata(self, ctx):
        """Strata the selection scores worst accuracy over.

        The groups when ``spurious`` is given; else, with ``selection="inferred"``
        and a head, the (class, pseudo-group) pairs of :meth:`_inferred_groups`,
        found on the whole fitting data so that both halves hold every
        pseudo-group; else the classes (worst-class accuracy).
        """
        if (ctx.groups is not None or ctx.head is None
                or getattr(self, "selection", "worst_class") != "inferred"):
            return ctx.strata
        self._inferred_groups(ctx)
        return ctx.shared["inferred_strata"]

    def _inferred_groups(self, ctx):
        """Pseudo-groups of the whole fitting data (``infer_groups``, ``"auto"``).

        Computed once, stored as ``ctx.inferred`` (so that subsets carry their
        rows), their compact (class, pseudo value) codes as
        ``ctx.shared["inferred_strata"]`` and the number of pseudo values as
        ``ctx.shared["inferred_strata_values"]``.
        """
        if ctx.inferred is None:
            from ..concepts._discriminant import selection_strata

            ctx.inferred, ctx.shared["inferred_strata"] = selection_strata(
                ctx.X, ctx.y, ctx.y_idx, ctx.head, ctx.evidence,
                int(ctx.rng.integers(np.iinfo(np.int32).max)))
            ctx.shared["inferred_strata_values"] = int(ctx.inferred.max()) + 1
        return ctx.inferred

    def _halves(self, ctx, strata):
        """The fitting half of the selection (stratified, from ``ctx.rng``)."""
        return stratified_halves(strata, ctx.rng)

    def _scoring_strata(self, ctx, rows, strata):
        """Strata of the scoring half ``rows`` (a method may infer them there)."""
        return strata[rows]

    def _choose(self, candidates, scores):
        """Index of the chosen candidate: the best score, the first among ties.

        A method may return None to ask for the next candidate's score first
        (candidates are then scored one at a time, in order).
        """
        if len(scores) < len(candidates):
            return None
        return int(np.argmax(scores))

    _sequential_selection = False

    def _select(self, ctx):
        grid = self._selection_grid(ctx)
        self.selection_scores_ = {}
        if not grid:
            return {}, None
        if len(grid) == 1:
            return grid[0], None
        strata = self._selection_strata(ctx)
        rows = subsample(strata, self._selection_max_samples, ctx.rng)
        half = self._halves(ctx, strata[rows])
        splits = [(rows[half], rows[~half]), (rows[~half], rows[half])]
        folds = [(ctx.subset(a, "select"), ctx.X[b], ctx.y_idx[b],
                  self._scoring_strata(ctx, b, strata))
                 for a, b in splits[:self._selection_folds]]
        expect(ctx, len(grid) * len(folds),
               f"selection: {len(grid)} candidates x {len(folds)} fold(s)")
        if self._sequential_selection:
            scores, heads = [], []
            for params in grid:
                score, head = self._score_candidates(folds, [params])
                scores += score
                heads += head
                best = self._choose(grid, scores)
                if best is not None:
                    break
        else:
            scores, heads = self._score_candidates(folds, grid)
            best = self._choose(grid, scores)
        self.selection_scores_ = {_key(p): sc for p, sc in zip(grid, scores)}
        return grid[best], (heads[best] if self._selection_folds == 1 else None)

    def _score_candidates(self, folds, grid):
        """Worst-stratum accuracy of each candidate, averaged over the folds."""
        total = np.zeros(len(grid))
        for fit_ctx, Xb, yb, sb in folds:
            heads = self._candidate_heads(fit_ctx, grid)
            coef = np.stack([h[0] for h in heads])
            icpt = np.stack([h[1] for h in heads])
            total += worst_stratum_accuracy(predict_index(Xb, coef, icpt), yb, sb)
        return [float(v) for v in total / len(folds)], heads

    def _candidate_heads(self, fit_ctx, grid):
        problems = [self._refit_problem(fit_ctx, **params) for params in grid]
        if any(not isinstance(p, RefitProblem) for p in problems):
            return [self._solve_head(fit_ctx, p)[:2] for p in problems]
        heads = []
        for batch in _stacks(problems):  # candidates that share operands: one solve
            merged, sizes = _stack(batch)
            fit = solve(fit_ctx, merged, max_iter=self.max_iter, tol=self.tol,
                        who=type(self).__name__)
            for part in np.split(np.arange(sum(sizes)), np.cumsum(sizes)[:-1]):
                heads.append(self._finish(fit_ctx, fit.coef[part].mean(axis=0),
                                          fit.intercept[part].mean(axis=0)))
            tick(fit_ctx, len(batch))
        return heads


def _key(params):
    """A readable, hashable key of a candidate (its single value when alone)."""
    if len(params) == 1:
        return next(iter(params.values()))
    return tuple(sorted(params.items()))
