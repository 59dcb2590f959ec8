"""The benchmarks' estimators, read from the package's registry (no hand-kept list).

Every estimator of :func:`sklearn_spur.utils.discovery.all_estimators` is built
with its defaults (the head, a seed, caches off) and fitted as it declares
(:func:`requirements`): with ``spurious`` where it needs or accepts it, and
also without it where it is label-free, so a new method is benchmarked unasked.
"""

from sklearn_spur.utils.discovery import all_estimators, requirements


def build(cls, *, head=None, **overrides):
    """An instance with the benchmark settings its parameters admit."""
    params = cls().get_params()
    settings = {"head": head, "random_state": 0, "memory": False, **overrides}
    return cls(**{k: v for k, v in settings.items() if k in params and (
        v is not None or k != "head")})


def registry_fits(head=None, **overrides):
    """``{label: (make, uses_spurious)}`` for every estimator and variant."""
    fits = {}
    for name, cls in all_estimators(include_torch=False):
        needs = requirements(cls)
        uses_head = needs["head"] != "none"

        def make(cls=cls, uses_head=uses_head):
            return build(cls, head=head if uses_head else None, **{
                k: v for k, v in overrides.items() if k in cls().get_params()})

        if needs["group_labels"] == "none":
            fits[name] = (make, False)
        elif needs["group_labels"] == "required" or not needs["label_free"]:
            fits[name] = (make, True)
        else:  # optional and label-free: both ways
            fits[f"{name} (s)"] = (make, True)
            fits[f"{name} (no s)"] = (make, False)
    return fits
