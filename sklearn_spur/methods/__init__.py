"""Last-layer methods: one module per estimator, each a small subclass of the template.

The template (:class:`sklearn_spur._core.template.LastLayerClassifier`) owns
``fit``; every module here states only its refit problem. Every public module
of this package is imported here and its ``__all__`` re-exported, so a new
method is one new module: the package, ``sklearn_spur`` and the registry
(:func:`sklearn_spur.utils.discovery.all_estimators`) pick it up.
"""

import importlib
import pkgutil

__all__ = []
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name.startswith("_"):
        continue
    _module = importlib.import_module(f"{__name__}.{_info.name}")
    for _name in _module.__all__:
        globals()[_name] = getattr(_module, _name)
        __all__.append(_name)
__all__.sort()
del _info, _module, _name
