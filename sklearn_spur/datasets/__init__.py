"""Datasets with spurious correlations: a real CNN benchmark and a synthetic recipe.

- :func:`make_waterdigits`: handwritten digits on spuriously coloured
  backgrounds, a small CNN trained on them by ERM, and its embeddings (the
  trained weights of the common configurations ship with the package, so
  these are the same on every machine; cached on disk).
- :func:`make_spurious_gaussians`: Gaussian core, spurious and noise features
  (Sagawa et al. 2020), with the true directions.
- :func:`load_movie_reviews`: real film-critic snippets, verdict and humour
  (the text case, embedded with a real MiniLM encoder in the examples),
  shipped with the package.

Each draws its held-out split balanced across groups or, with ``val_rho``, as
correlated as the training data.
"""

from ._gaussians import make_spurious_gaussians
from ._reviews import load_movie_reviews
from ._waterdigits import WaterDigitsCNN, make_waterdigits

__all__ = [
    "WaterDigitsCNN",
    "load_movie_reviews",
    "make_spurious_gaussians",
    "make_waterdigits",
]
