"""Checks of image and label arrays as users have them, and what is computed from them.

The one place the checks of the user's own data live (image folders, ``.npz`` files and
factories all pass through here): images ``(N, C, S, S)`` square, non-empty, finite;
labels whole numbers ``0..K-1`` with every class present in the training split.

Image layouts accepted from arrays (``.npz``): ``(N, H, W)`` (one channel), channels-last
``(N, H, W, C)`` (NHWC, as Keras/TensorFlow save) and channels-first ``(N, C, H, W)`` (NCHW,
as PyTorch); the layout is read off the shape (the two equal sides are the image's). Pixel
types: uint8 (0..255), any other integer type holding only 0..255, or floating point.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from ..errors import InputError

#: Images summed per step when computing channel statistics (bounds the float64 memory).
_STATS_CHUNK = 2048


def to_nchw(x: np.ndarray, what: str) -> np.ndarray:
    """``x`` as ``(N, C, S, S)``: uint8 for integer pixels, float32 for floating point."""
    x = np.asarray(x)
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.integer)
                                   or np.issubdtype(x.dtype, np.floating)):
        raise InputError(f"{what} has dtype {x.dtype}; give uint8 pixels (0..255) or floats")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        nchw, nhwc = x.shape[2] == x.shape[3], x.shape[1] == x.shape[2]
        if nchw and nhwc:
            raise InputError(f"{what} has shape {x.shape}: channels and sides are all "
                             f"{x.shape[1]}, so its layout is ambiguous; give (N, C, H, W) "
                             "images whose sides differ from the number of channels")
        if nhwc:
            x = x.transpose(0, 3, 1, 2)
        elif not nchw:
            raise InputError(f"{what} has shape {x.shape}, whose images are not square; give "
                             "square images as (N, C, S, S) (NCHW), (N, S, S, C) (NHWC) or "
                             "(N, S, S)")
    else:
        hint = (" (flat rows? reshape them to (N, C, H, W) or (N, H, W, C))"
                if x.ndim == 2 else "")
        raise InputError(f"{what} has shape {x.shape}; give images as (N, C, S, S) (NCHW), "
                         f"(N, S, S, C) (NHWC) or (N, S, S){hint}")
    if x.shape[2] != x.shape[3]:
        raise InputError(f"{what} has images of {x.shape[2]}×{x.shape[3]} pixels; give "
                         "square images")
    if x.shape[0] == 0:
        raise InputError(f"{what} holds no images; give at least one")
    if np.issubdtype(x.dtype, np.floating):
        check_finite_images(x, what)
        return np.ascontiguousarray(x, dtype=np.float32)
    if x.dtype != np.uint8:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise InputError(f"{what} has {x.dtype} pixels from {lo} to {hi}; give uint8 "
                             "pixels (0..255) or floats")
    return np.ascontiguousarray(x, dtype=np.uint8)


def check_finite_images(x: np.ndarray, what: str) -> None:
    """InputError naming the first image of ``x`` holding a NaN or infinite pixel."""
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(f"{what}: image {first} (and {int(bad.sum()) - 1} more) holds NaN "
                         "or infinite pixels; give finite values")


def to_labels(y: np.ndarray, what: str, n: int) -> np.ndarray:
    """``y`` as int64 ``(n,)`` class indices ≥ 0 (floats holding whole numbers allowed)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        hint = (" (one-hot? give y.argmax(1))" if y.ndim == 2 else "")
        raise InputError(f"{what} has shape {y.shape}; give one class index per image, shape "
                         f"({n},){hint}")
    if len(y) != n:
        raise InputError(f"{what} holds {len(y)} labels for {n} images; give one per image")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise InputError(f"{what} holds labels that are not whole numbers; give class "
                             "indices 0..K-1")
    elif y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"{what} has dtype {y.dtype}; give integer class indices 0..K-1")
    y = y.astype(np.int64)
    if n and y.min() < 0:
        raise InputError(f"{what} holds the label {int(y.min())}; labels must be class indices "
                         "0..K-1")
    return y


def check_classes(train: np.ndarray, test: np.ndarray, name: str) -> int:
    """The number of classes K: every class 0..K-1 has training images and the test labels
    lie in 0..K-1; else InputError naming ``name`` and the class."""
    k = int(train.max()) + 1
    counts = np.bincount(train, minlength=k)
    if (counts == 0).any():
        empty = np.flatnonzero(counts == 0)
        listed = ", ".join(str(c) for c in empty[:5]) + (" …" if len(empty) > 5 else "")
        raise InputError(f"{name}: the training labels run to {k - 1} but class(es) {listed} "
                         f"have no training images; labels must be contiguous 0..K-1, each "
                         "class with at least one image")
    if len(test) and int(test.max()) >= k:
        raise InputError(f"{name}: the test labels include {int(test.max())}, beyond the "
                         f"training classes 0..{k - 1}; test labels must be training classes")
    return k


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of ``images`` ``(N, C, H, W)`` (uint8 pixels
    scaled to [0, 1]); a constant channel gets std 1 (nothing to divide by)."""
    pixel = 255.0 if images.dtype == torch.uint8 else 1.0
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    square = torch.zeros(c, dtype=torch.float64)
    for lo in range(0, len(images), _STATS_CHUNK):
        x = images[lo: lo + _STATS_CHUNK].double() / pixel
        total += x.sum(dim=(0, 2, 3))
        square += x.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (square / count - mean.square()).clamp_min(0).sqrt()
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def array_digest(name: str, array: np.ndarray) -> tuple[str, str]:
    """``(name, SHA-256 of dtype, shape and bytes)`` of an array."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{a.dtype.str} {a.shape}\n".encode())
    h.update(a.tobytes())
    return name, h.hexdigest()
