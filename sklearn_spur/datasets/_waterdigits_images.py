"""WaterDigits images: the digits, their splits and their painted backgrounds.

Everything here is numpy (and one bilinear upsampling) with fixed seeds, so the
images and attributes are the same on every machine.
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.nn import functional as F

from ._gaussians import _spurious_values

SPLITS = ("train", "val", "test")

# Separate random streams (numpy SeedSequence keys ``[random_state, stream]``) for
# what was added after the first recipe: drawing from them leaves the main stream,
# hence the images of the default call, exactly as they were.
_STREAM_VAL_COLOUR = 1
_STREAM_STRIPES = 2


def _class_of_digit(digit, n_classes):
    # floor(digit * n_classes / 10): contiguous bins of near-equal size;
    # 2 classes -> digit >= 5.
    return np.asarray(digit) * n_classes // 10


def _palette(n_classes, saturation):
    hues = np.array([colorsys.hsv_to_rgb(k / n_classes, 1.0, 1.0)
                     for k in range(n_classes)], dtype=np.float32)
    return (0.5 + saturation * (hues - 0.5)).astype(np.float32)


def _stripe_shade(stripes, size, depth):
    """Per-row brightness of the background, shape (n, 1, size, 1).

    Texture ``0`` is plain; texture ``k >= 1`` darkens every ``(k + 1)``-th row
    by ``depth`` (horizontal stripes of period ``k + 1`` pixels).
    """
    rows = np.arange(size)
    period = np.asarray(stripes)[:, None] + 1
    dark = (stripes[:, None] > 0) & (rows[None, :] % period == 0)
    shade = 1.0 - depth * dark.astype(np.float32)
    return shade[:, None, :, None].astype(np.float32)


def _render(digits, colour, palette, rng, recipe, stripes=None):
    """Paint upsampled, randomly shifted digits (ink in [0, 1]) on their colour."""
    size, inner = recipe["image_size"], recipe["digit_size"]
    n = len(digits)
    up = F.interpolate(torch.from_numpy(digits)[:, None], size=(inner, inner),
                       mode="bilinear", align_corners=False)[:, 0].numpy()
    ink = np.zeros((n, size, size), dtype=np.float32)
    shift = rng.integers(0, size - inner + 1, size=(n, 2))
    for i, (dy, dx) in enumerate(shift):
        ink[i, dy:dy + inner, dx:dx + inner] = up[i]
    ink = ink[:, None]
    background = palette[colour][:, :, None, None]
    if stripes is not None:
        background = background * _stripe_shade(stripes, size, recipe["stripe_depth"])
    images = (1.0 - ink) * background + ink  # white ink
    images += recipe["noise"] * rng.standard_normal(images.shape, dtype=np.float32)
    return images.astype(np.float32)


def _balanced_within(y, colour, n_values, rng):
    """Values spread evenly within every (class, colour) cell."""
    out = np.empty_like(y)
    for key in np.unique(y * n_values + colour):
        idx = np.flatnonzero(y * n_values + colour == key)
        out[idx] = rng.permutation(np.arange(len(idx)) % n_values)
    return out


def _stripes_of(split, y, colour, n_classes, stripes, val_rho, rng):
    if split == "train":
        return _spurious_values(y, n_classes, stripes, False, rng)
    if split == "val" and val_rho is not None:
        return _spurious_values(y, n_classes, val_rho, False, rng)
    # Held-out and test: every (class, colour, texture) group equally frequent.
    return _balanced_within(y, colour, n_classes, rng)


def _make_splits(n_classes, rho, random_state, recipe, val_rho=None, stripes=None):
    """Images, classes and attributes of the three splits, and the palette."""
    digits = load_digits()
    pixels = (digits.images / 16.0).astype(np.float32)
    index = np.arange(len(pixels))
    f_train, f_val, _ = recipe["split"]
    train_idx, rest = train_test_split(index, train_size=f_train,
                                       stratify=digits.target,
                                       random_state=random_state)
    val_idx, test_idx = train_test_split(rest, train_size=f_val / (1 - f_train),
                                         stratify=digits.target[rest],
                                         random_state=random_state)
    rng = np.random.default_rng(random_state)
    rng_val = np.random.default_rng([random_state, _STREAM_VAL_COLOUR])
    rng_stripes = np.random.default_rng([random_state, _STREAM_STRIPES])
    palette = _palette(n_classes, recipe["saturation"])
    out = {}
    for split, idx in zip(SPLITS, (train_idx, val_idx, test_idx)):
        src = np.repeat(np.sort(idx), recipe["variants"])
        y = _class_of_digit(digits.target[src], n_classes).astype(np.int64)
        colour = _spurious_values(y, n_classes, rho, split != "train", rng)
        if split == "val" and val_rho is not None:
            # drawn from its own stream: the main one moves on as for a balanced
            # split, so that the test split is the same whatever val_rho
            colour = _spurious_values(y, n_classes, val_rho, False, rng_val)
        texture = None
        if stripes is not None:
            texture = _stripes_of(split, y, colour, n_classes, stripes, val_rho,
                                  rng_stripes)
        out[split] = {"images": _render(pixels[src], colour, palette, rng, recipe,
                                        texture),
                      "y": y, "spurious": colour, "digit_index": src.astype(np.int64)}
        if texture is not None:
            out[split]["stripes"] = texture
    return out, palette
