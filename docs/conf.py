"""Sphinx configuration for sklearn-spur.

Sphinx + numpydoc + sphinx-gallery, the stack of scikit-learn and the projects
around it: the docstrings are numpydoc already, autosummary builds one page per
public name, and sphinx-gallery renders ``examples/`` (the scripts the test
suite runs) as a gallery. ``tests/test_docs.py`` builds it with ``-W`` (warnings
are errors) and without executing the gallery (``-D plot_gallery=0``); the
examples themselves are executed by ``tests/test_examples.py``.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
import sklearn_spur  # noqa: E402

project = "sklearn-spur"
author = "sklearn-spur developers"
copyright = "2026, sklearn-spur developers"
release = sklearn_spur.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

autosummary_generate = True
# Document each class's own API; what it inherits from scikit-learn (get_params,
# set_*_request, score, ...) is documented there.
autodoc_default_options = {"members": True}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()
templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.md5", "**/*.codeobj.json"]

intersphinx_mapping = {}  # offline builds: no inventories fetched

html_theme = "pydata_sphinx_theme"
html_title = "sklearn-spur"
html_static_path = []
html_theme_options = {"navigation_with_keys": False}

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "within_subsection_order": "FileNameSortKey",
    "remove_config_comments": True,
    "write_computation_times": False,
}
suppress_warnings = ["config.cache"]
