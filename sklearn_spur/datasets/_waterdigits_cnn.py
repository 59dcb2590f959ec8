"""The WaterDigits CNN: architecture, ERM training, and the weights shipped with it.

The package ships the trained weights of the configurations that its tests, demo,
examples and benchmarks use (``data/waterdigits/*.npz``: a state dict as plain
float32 arrays, read with ``np.load(allow_pickle=False)``), so that these get the
same network on every machine. Any other configuration is trained on the spot.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._core.progress import progress_bar

WEIGHTS_DIR = Path(__file__).resolve().parent / "data" / "waterdigits"

# What the weights depend on (and "stripe_depth" with stripes): the recipe of the
# training images and of the training.
_TRAINING_KEYS = ("image_size", "digit_size", "split", "variants", "saturation",
                  "noise", "epochs", "lr", "batch_size")


class WaterDigitsCNN(nn.Module):
    """The small CNN that :func:`make_waterdigits` trains by ERM.

    Three 3x3 convolution blocks (batch norm, ReLU, max pooling), global
    average pooling, ``Linear(4 * width, n_embedding)`` and ReLU: the
    penultimate embedding. The head ``fc`` is ``Linear(n_embedding, n_classes)``.

    Parameters
    ----------
    n_classes : int, default=2
        Outputs of the head.
    width : int, default=16
        Channels of the first convolution (doubled at each block).
    n_embedding : int, default=64
        Size of the penultimate embedding.

    Attributes
    ----------
    features : torch.nn.Sequential
        Everything up to the embedding (the input of ``fc``).
    fc : torch.nn.Linear
        The classification head.
    """

    def __init__(self, n_classes=2, width=16, n_embedding=64):
        super().__init__()

        def block(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out),
                    nn.ReLU()]

        self.features = nn.Sequential(
            *block(3, width), nn.MaxPool2d(2),
            *block(width, 2 * width), nn.MaxPool2d(2),
            *block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(4 * width, n_embedding), nn.ReLU(),
        )
        self.fc = nn.Linear(n_embedding, n_classes)

    def embed(self, x):
        """Penultimate embeddings: the input of ``fc``."""
        return self.features(x)

    def forward(self, x):
        return self.fc(self.features(x))


@contextlib.contextmanager
def deterministic_torch(n_threads=1):
    """Run torch deterministically on one machine; restore the caller's settings.

    One intra-op thread (results independent of the core count), deterministic
    algorithms only (torch raises on an op that has none), and a fork of the
    global random generator (the caller's random state is left as it was).
    What stays machine-dependent: the CPU kernels themselves (oneDNN and BLAS
    choose AVX2, AVX-512, AMX or NEON code by processor, and a torch release may
    change them), so another processor or torch version rounds differently, and
    over a dozen epochs of training the difference grows into another network.
    """
    threads = torch.get_num_threads()
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(n_threads)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.set_num_threads(threads)


def train_cnn(images, y, n_classes, random_state, recipe, verbose=False):
    """ERM: cross-entropy, Adam with a cosine schedule; returns the model in eval mode.

    Call it inside :func:`deterministic_torch`.
    """
    torch.manual_seed(random_state)
    model = WaterDigitsCNN(n_classes)
    gen = torch.Generator().manual_seed(random_state)
    X, y = torch.from_numpy(images), torch.from_numpy(y)
    bs, epochs = recipe["batch_size"], recipe["epochs"]
    n_batches = -(-len(X) // bs)
    opt = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * n_batches)
    model.train()
    with progress_bar(verbose, total=epochs * n_batches, unit="batch",
                      desc="make_waterdigits", leave=False) as bar:
        for epoch in range(epochs):
            perm = torch.randperm(len(X), generator=gen)
            total = 0.0
            for start in range(0, len(X), bs):
                batch = perm[start:start + bs]
                loss = F.cross_entropy(model(X[batch]), y[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(batch)
                bar.update()
            bar.set_postfix(epoch=f"{epoch + 1}/{epochs}",
                            loss=f"{total / len(X):.4f}")
    return model.eval()


@torch.no_grad()
def forward(model, images):
    """Embeddings and predicted classes of the images, in one pass."""
    emb = model.embed(torch.from_numpy(images))
    return emb.numpy(), model.fc(emb).argmax(1).numpy()


def recipe_digest(recipe, version, stripes=None):
    """Short hash of what the trained weights depend on."""
    keys = _TRAINING_KEYS + (() if stripes is None else ("stripe_depth",))
    key = {k: recipe.get(k) for k in keys}
    text = json.dumps({"version": version, "recipe": key}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def weights_name(n_classes, rho, random_state, stripes=None):
    """File name of the shipped weights of a configuration."""
    texture = "" if stripes is None else f"_t{float(stripes):g}"
    return f"c{int(n_classes)}_r{float(rho):g}{texture}_s{int(random_state)}.npz"


def shipped_file_digest(n_classes, rho, random_state, stripes=None):
    """Hash of the shipped weights file of a configuration (None if there is none):
    part of the cache key, so that a package update never meets a stale cache."""
    path = WEIGHTS_DIR / weights_name(n_classes, rho, random_state, stripes)
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load_shipped(n_classes, rho, random_state, stripes, digest):
    """The shipped model of a configuration, or None when none matches."""
    path = WEIGHTS_DIR / weights_name(n_classes, rho, random_state, stripes)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as f:
        if str(f["recipe_digest"]) != digest:
            return None
        state = {k: torch.from_numpy(f[k]) for k in f.files if k != "recipe_digest"}
    model = WaterDigitsCNN(n_classes)
    model.load_state_dict(state)
    return model.eval()


def save_shipped(model, n_classes, rho, random_state, stripes, digest, folder=None):
    """Write a model's state dict as a shipped weights file (a maintainer's tool)."""
    folder = Path(WEIGHTS_DIR if folder is None else folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / weights_name(n_classes, rho, random_state, stripes)
    arrays = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    np.savez_compressed(path, recipe_digest=np.array(digest), **arrays)
    return path
