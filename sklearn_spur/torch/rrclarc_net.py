"""RR-ClArC at any layer: train the layers above it with the gradient penalty (skorch).

:class:`RRClArCNet` fine-tunes a copy of the part of a network above a chosen
layer (``head``) on that layer's activations, with cross-entropy plus the
RR-ClArC penalty of Dreyer, Pahde et al.: the squared dot product of the
concept direction with the spatially averaged gradient of the logits with
respect to the activations. Training runs through skorch's
``NeuralNetClassifier``; :func:`replace_layers` writes the trained layers back
into the model.
"""

from __future__ import annotations

import copy
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import EarlyStopping
from skorch.dataset import ValidSplit
from torch import nn

from .._core.groups import check_spurious, host_array
from ._rrclarc_mixin import _RRClArCNetParts
from ._rrclarc_parts import (
    _PenalizedNet,
    concept_sensitivity,
    directional_logits,
    replace_layers,
    rrclarc_penalty,
)

__all__ = ["RRClArCNet", "concept_sensitivity", "directional_logits", "replace_layers",
           "rrclarc_penalty"]

_FROZEN_TYPES = (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase)


# -------------------------------------------------------------------- estimator
def _resolve_device(device):
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class RRClArCNet(_RRClArCNetParts, ClassifierMixin, BaseEstimator):
    """RR-ClArC through the layers above a chosen one, trained with skorch.

    Fine-tunes a deep copy of ``head``, the part of a network above a layer, on
    that layer's activations ``A`` with::

        mean_i CE(y_i, head(A_i)) + lam * mean_i sum_v (v . g_i)^2

    where ``g_i`` is the gradient of the logits, summed with random signs
    ``s ~ U{-1, +1}^K``, with respect to ``A_i``, averaged over the spatial
    axes (``g_i = mean_hw grad_A (s . head(A_i))``), and ``v`` runs over the
    unit concept directions of a :class:`~sklearn_spur.SpuriousProbe` fitted on
    spatially pooled activations ``(n, C)``; they apply channel-wise to
    ``(n, C, H, W)``. This is the penalty of the authors' code [1]_. Training
    runs through skorch's ``NeuralNetClassifier`` (callbacks, early stopping
    on a validation split). On embeddings ``(n, d)`` with an ``nn.Linear``
    head the penalty is ``lam * sum_k (W_k v)^2`` in expectation, the
    last-layer :class:`~sklearn_spur.RRClArCClassifier`'s (see Notes).

    Parameters
    ----------
    head : torch.nn.Module
        The layers above the chosen one: maps ``A`` to ``(n, n_classes)``
        logits, output ``k`` for the ``k``-th sorted class of ``y``. Never
        modified: a deep copy is trained.
    probe : SpuriousProbe or FrozenEstimator, default=None
        Where the concept directions come from. A fitted probe (or a
        ``FrozenEstimator`` of one, which survives ``clone``) is used as is;
        fit it on pooled activations of held-out data, e.g.
        ``A.reshape(n, C, -1).max(-1)``. An unfitted one (None is
        ``SpuriousProbe()``) is cloned and fitted on the training activations,
        pooled by ``cav_pooling``, with ``spurious``.
    lam : float, default=1.0
        Strength of the penalty. Its scale depends on the layer: a useful grid
        spans several decades (the reference sweeps 0.05 to 1e8).
    cav_pooling : {"max", "mean"}, default="max"
        How an unfitted probe sees ``(n, C, *spatial)`` activations: their
        maximum or mean over the spatial axes (the reference max-pools).
    signs : {"random", "expected"}, default="random"
        ``"random"``: fresh random signs per sample and step (the reference).
        ``"expected"``: their expectation, ``sum_k (v . mean_hw grad logit_k)^2``,
        deterministic (for full-batch L-BFGS).
    freeze : "conv_bn", "none" or list of str, default="conv_bn"
        Parameters that stay fixed: those of convolution and batch-norm layers
        (the reference's choice; frozen batch norm also keeps its running
        statistics, in eval mode), none, or those of the named submodules of
        ``head``.
    optimizer : torch optimizer class, default=None
        ``torch.optim.Adam`` when None. ``torch.optim.LBFGS`` with
        ``batch_size=-1`` solves the full-batch problem.
    lr : float, default=1e-3
        Learning rate.
    max_epochs : int, default=30
        Training epochs (the most, with early stopping).
    batch_size : int, default=128
        Samples per step; -1 is the whole training split.
    validation_fraction : float or None, default=0.2
        Stratified fraction of the data held out for early stopping on the
        objective (cross-entropy + penalty); the best epoch's weights are
        kept. None: train on everything, no early stopping.
    patience : int, default=5
        Epochs without improvement before stopping.
    callbacks : list or None, default=None
        Extra skorch callbacks.
    net_params : dict or None, default=None
        Other keyword arguments of ``NeuralNetClassifier`` (e.g.
        ``{"optimizer__weight_decay": 1e-4}``).
    device : str or torch.device, default="auto"
        ``"auto"``: CUDA when available, else CPU.
    random_state : int, RandomState or None, default=None
        Seeds the split, the shuffling and the signs (torch's global generator
        is forked, so the caller's state is left as it was).
    verbose : int, default=0
        skorch's verbosity.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    probe_ : SpuriousProbe
        The probe whose ``directions_`` are penalised.
    directions_ : ndarray of shape (n_directions, C)
        The penalised unit directions.
    net_ : skorch.NeuralNetClassifier
        The trained net; ``net_.module_`` is the trained copy of ``head`` and
        ``net_.history`` its training history.
    frozen_ : list of str
        Names of the parameters of ``head`` that were not trained.
    n_features_in_ : int
        Channels (or features) of the activations.

    See Also
    --------
    sklearn_spur.RRClArCClassifier : The last-layer case, in closed form.
    sklearn_spur.SpuriousProbe : The concept directions.
    replace_layers : Write the trained layers back into the model.

    Notes
    -----
    For two classes and a linear head ``W`` of two rows, the expected penalty
    is ``lam (W_0 v)^2 + lam (W_1 v)^2``; cross-entropy sees only the
    difference ``D = W_1 - W_0``, so at the optimum ``W_0 v = -W_1 v`` and the
    penalty is ``lam / 2 (D v)^2``: ``RRClArCClassifier(lam=lam / 2)``.

    References
    ----------
    .. [1] M. Dreyer, F. Pahde, C. J. Anders, W. Samek, S. Lapuschkin, "From Hope
       to Safety: Unlearning Biases of Deep Models via Gradient Penalization in
       Latent Space", AAAI 2024 (arXiv:2308.09437); code:
       github.com/frederikpahde/rrclarc.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from torch import nn
    >>> from sklearn_spur import RRClArCNet, SpuriousProbe
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 300)
    >>> s = np.where(rng.random(300) < .9, y, 1 - y)  # attribute agrees with y 90%
    >>> A = rng.normal(0, 1, (300, 4, 3, 3)).astype("float32")  # (n, C, H, W)
    >>> A[:, 0] += y[:, None, None]; A[:, 1] += 2 * s[:, None, None]
    >>> probe = SpuriousProbe().fit(A.max((2, 3)), y, spurious=s)
    >>> _ = torch.manual_seed(0)
    >>> upper = nn.Sequential(nn.Conv2d(4, 8, 1), nn.ReLU(),
    ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    >>> est = RRClArCNet(head=upper, probe=probe, lam=100.0, freeze="none",
    ...                  lr=1e-2, max_epochs=20, random_state=0).fit(A, y)
    >>> est.predict(A[:3]).shape, est.predict_proba(A[:3]).shape
    ((3,), (3, 2))
    >>> plain = RRClArCNet(head=upper, probe=probe, lam=0.0, freeze="none",
    ...                    lr=1e-2, max_epochs=20, random_state=0).fit(A, y)
    >>> def sens(e):
    ...     return np.abs(e.concept_sensitivity(A)).mean()
    >>> bool(sens(est) < 0.2 * sens(plain))
    True
    """

    # Declared for the registry (`requirements`): `spurious` fits the probe unless
    # a fitted one is given, so the method reads group labels by default.
    _uses_head = "required"
    _label_free = False
    __metadata_request__fit = {"spurious": True}

    _parameter_constraints: dict = {
        "head": [nn.Module],
        "probe": [HasMethods(["fit", "transform"]), None],
        "lam": [Interval(Real, 0, None, closed="left")],
        "cav_pooling": [StrOptions({"max", "mean"})],
        "signs": [StrOptions({"random", "expected"})],
        "freeze": [StrOptions({"conv_bn", "none"}), list, tuple],
        "optimizer": [type, None],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, -1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither"), None],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "callbacks": [list, None],
        "net_params": [dict, None],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, *, head, probe=None, lam=1.0, cav_pooling="max",
                 signs="random", freeze="conv_bn", optimizer=None, lr=1e-3,
                 max_epochs=30, batch_size=128, validation_fraction=0.2,
                 patience=5, callbacks=None, net_params=None, device="auto",
                 random_state=None, verbose=0):
        self.head = head
        self.probe = probe
        self.lam = lam
        self.cav_pooling = cav_pooling
        self.signs = signs
        self.freeze = freeze
        self.optimizer = optimizer
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.callbacks = callbacks
        self.net_params = net_params
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------ inputs
    def fit(self, X, y, *, spurious=None):
        """Train a copy of ``head`` with cross-entropy and the RR-ClArC penalty.

        Parameters
        ----------
        X : array-like or tensor of shape (n_samples, C, H, W) or (n_samples, d)
            Activations of the chosen layer (the inputs of ``head``).
        y : array-like of shape (n_samples,)
            Class labels.
        spurious : array-like of shape (n_samples,), default=None
            Spurious attribute: used only to fit an unfitted probe; routed and
            ignored otherwise.

        Returns
        -------
        self : RRClArCNet
            The fitted estimator.
        """
        self._validate_params()
        A = self._check_A(X, reset=True)
        y = host_array(y) if torch.is_tensor(y) else np.asarray(y)
        if y.ndim != 1 or len(y) != len(A):
            raise ValueError(f"RRClArCNet: y must be 1-D with {len(A)} labels (one per "
                             f"row of A); got shape {y.shape}.")
        s = check_spurious(spurious, len(A), who="RRClArCNet", required=False)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"RRClArCNet needs at least 2 classes in y; got "
                             f"{self.classes_.tolist()}.")
        self.probe_ = self._fitted_probe(A, y, s)
        self.directions_ = np.asarray(self.probe_.directions_, dtype=A.dtype)

        dtype = torch.float64 if A.dtype == np.float64 else torch.float32
        module = copy.deepcopy(self.head).to(dtype)
        self.frozen_, bn = self._frozen(module)
        frozen = set(self.frozen_)
        for name, p in module.named_parameters():
            if name in frozen:
                p.requires_grad_(False)
        with torch.no_grad():
            out = module.eval()(torch.as_tensor(A[:2]))
        module.train()
        if out.ndim != 2 or out.shape[1] != len(self.classes_):
            raise ValueError(
                f"RRClArCNet: head maps A to shape {tuple(out.shape)} but y has "
                f"{len(self.classes_)} classes: head must give one logit per class, "
                "(n, n_classes), for the sorted labels of y.")
        if not any(p.requires_grad for p in module.parameters()):
            raise ValueError("RRClArCNet: every parameter of head is frozen; pass "
                             "freeze='none' or a list of submodules to freeze.")

        rs = check_random_state(self.random_state)
        seed = int(rs.randint(np.iinfo(np.int32).max))
        device = _resolve_device(self.device)
        callbacks = list(self.callbacks or [])
        split = None
        if self.validation_fraction is not None:
            split = ValidSplit(self.validation_fraction, stratified=True,
                               random_state=seed)
            callbacks.append(("rrclarc_early_stopping", EarlyStopping(
                monitor="valid_loss", patience=self.patience, load_best=True)))
        net = _PenalizedNet(
            module, criterion=nn.CrossEntropyLoss,
            optimizer=self.optimizer or torch.optim.Adam, lr=self.lr,
            max_epochs=self.max_epochs, batch_size=self.batch_size,
            iterator_train__shuffle=True, train_split=split, callbacks=callbacks,
            classes=np.arange(len(self.classes_)), device=device,
            verbose=self.verbose, lam=float(self.lam), directions=self.directions_,
            signs=self.signs, eval_modules=tuple(bn), **(self.net_params or {}))
        devices = [torch.cuda.current_device()] if str(device).startswith("cuda") else []
        with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
            # skorch warns that an instantiated module's parameters are reused.
            warnings.filterwarnings("ignore", module="skorch")
            torch.manual_seed(seed)
            net.fit(A, y_idx.astype(np.int64))
        self.net_ = net
        return self

    # ----------------------------------------------------------- predict
    def _logits(self, A):
        check_is_fitted(self)
        A = self._check_A(A, reset=False)
        return self.net_.forward(A, training=False, device="cpu").numpy()

    def decision_function(self, X):
        """Logits of the trained layers.

        Parameters
        ----------
        X : array-like or tensor of shape (n_samples, C, H, W) or (n_samples, d)
            Activations.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            For two classes, the logit difference ``logit_1 - logit_0``.
        """
        z = self._logits(X)
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    def predict_proba(self, X):
        """Softmax of the logits.

        Parameters
        ----------
        X : array-like or tensor of shape (n_samples, C, H, W) or (n_samples, d)
            Activations.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        z = self._logits(X)
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    def predict(self, X):
        """Class labels.

        Parameters
        ----------
        X : array-like or tensor of shape (n_samples, C, H, W) or (n_samples, d)
            Activations.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        return self.classes_[self._logits(X).argmax(1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = True
        return tags
