"""An image folder: one sub-folder of PNG/JPEG images per class, read with Pillow.

Layouts: ``PATH/<class>/…`` (the held-out split is made: :data:`TEST_FRACTION` of each
class, drawn with the fixed seed :data:`SPLIT_SEED`, so every run sees the same test
images), or ``PATH/train/<class>/…`` with ``PATH/test/<class>/…`` (or ``PATH/val/``) given.
Classes are the sub-folders of the training split in sorted order (label 0 first), as
torchvision's ``ImageFolder`` numbers them; images may sit deeper inside a class folder.
Hidden files and folders (``.name``) are skipped.

Every image must have one size (square); the channels follow the image mode (``L`` and
``1`` → 1 channel, ``RGB``, palette and ``CMYK`` → 3; alpha is dropped). A folder mixing
grey and colour images is converted to the majority (a tie: colour), with a warning.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError

EXTENSIONS = (".png", ".jpg", ".jpeg")
TEST_FRACTION = 0.2
SPLIT_SEED = 0
HELD_OUT = ("test", "val")
#: Pillow modes read as grey (1 channel) and as colour (3 channels); others are refused.
_GREY = {"1": "L", "L": "L", "LA": "L"}
_COLOUR = {m: "RGB" for m in ("RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV")}
_LAYOUT = ("one sub-folder of PNG/JPEG images per class (PATH/<class>/*.png), or "
           "PATH/train/<class>/ and PATH/test/<class>/")


@dataclass
class FolderImages:
    """What an image folder holds: uint8 ``(N, C, S, S)`` images and labels per split, the
    class names, the files read (train then test) and their ``(relative path, SHA-256)``."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    files: list[Path]
    digests: list[tuple[str, str]]
    split: str


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _class_dirs(base: Path, root: Path) -> list[Path]:
    return sorted(p for p in base.iterdir() if p.is_dir() and _visible(p, root))


def _images_of(folder: Path, root: Path, name: str) -> list[Path]:
    """The PNG/JPEG files under class folder ``folder``, sorted; InputError when none."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and _visible(p, root))
    images = [p for p in files if p.suffix.lower() in EXTENSIONS]
    if not images:
        others = ", ".join(p.name for p in files[:3]) + (" …" if len(files) > 3 else "")
        raise InputError(f"data set {name!r}: class folder {str(folder)!r} holds no PNG/JPEG "
                         "images" + (f" (only {others})" if files else "") +
                         "; every class needs at least one image")
    return images


def _layout(root: Path, name: str) -> tuple[Path, Path | None]:
    """(training folder, held-out folder or None when the split is to be made)."""
    if not root.is_dir():
        raise InputError(f"data set {name!r}: folder {str(root)!r} does not exist; give a "
                         f"folder with {_LAYOUT}")
    subdirs = {p.name: p for p in _class_dirs(root, root)}
    if "train" not in subdirs:
        if not subdirs:
            raise InputError(f"data set {name!r}: folder {str(root)!r} has no sub-folders; "
                             f"give a folder with {_LAYOUT}")
        return root, None
    held = next((subdirs[h] for h in HELD_OUT if h in subdirs), None)
    extra = sorted(set(subdirs) - {"train", *HELD_OUT})
    if extra:
        raise InputError(f"data set {name!r}: folder {str(root)!r} holds train/ beside other "
                         f"folders ({', '.join(extra[:3])}); give either PATH/train/<class>/ "
                         "(with PATH/test/<class>/) or only PATH/<class>/")
    return subdirs["train"], held


def _read(path: Path, name: str) -> tuple[np.ndarray, bytes]:
    """(pixels (H, W) or (H, W, 3) uint8, file bytes) of one image."""
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as im:
            mode = im.mode
            if mode in _GREY:
                target = _GREY[mode]
            elif mode in _COLOUR:
                target = _COLOUR[mode]
            else:
                raise InputError(f"data set {name!r}: image {str(path)!r} has Pillow mode "
                                 f"{mode!r} (16-bit or float pixels); save it as 8-bit grey "
                                 "(L) or colour (RGB)")
            pixels = np.asarray(im.convert(target), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"data set {name!r}: image {str(path)!r} cannot be read ({exc}); "
                         "give PNG or JPEG files") from None
    return pixels, data


def _to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """uint8 ``(C, S, S)`` with ``channels`` channels (grey repeated, colour → Pillow's L)."""
    if pixels.ndim == 2 and channels == 3:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    elif pixels.ndim == 3 and channels == 1:
        pixels = np.asarray(Image.fromarray(pixels, "RGB").convert("L"), dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _made_split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the held-out images: ``fraction`` of each class (rounded, at least
    one of a class of two or more, never all), drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    for c in range(int(labels.max()) + 1):
        members = np.flatnonzero(labels == c)
        n = len(members)
        k = min(max(int(round(n * fraction)), 1), n - 1) if n >= 2 else 0
        held[rng.permutation(members)[:k]] = True
    return held


def read_imagefolder(root: str | Path, name: str | None = None, *,
                     test_fraction: float = TEST_FRACTION,
                     seed: int = SPLIT_SEED) -> FolderImages:
    """The images of the folder ``root`` (see the module's docstring), checked.

    InputError, naming the folder or file, for a missing folder, no class folders, an
    empty class, a file Pillow cannot read, 16-bit images, or an image whose size differs
    from the others' (or is not square). ``name`` is the data set named in messages.
    """
    root = Path(root).expanduser()
    name = name or f"imagefolder:{root}"
    train_dir, held_dir = _layout(root, name)
    classes = [p.name for p in _class_dirs(train_dir, root)]
    if not classes:
        raise InputError(f"data set {name!r}: folder {str(train_dir)!r} has no class "
                         f"sub-folders; give a folder with {_LAYOUT}")
    entries: list[tuple[Path, int, bool]] = []  # (file, label, held out)
    for label, cls in enumerate(classes):
        entries += [(p, label, False) for p in _images_of(train_dir / cls, root, name)]
    if held_dir is not None:
        held_classes = [p.name for p in _class_dirs(held_dir, root)]
        unknown = sorted(set(held_classes) - set(classes))
        if unknown:
            raise InputError(f"data set {name!r}: the held-out folder {str(held_dir)!r} has "
                             f"class folder(s) {', '.join(unknown[:3])} that the training "
                             f"folder lacks; its classes are {', '.join(classes[:10])}")
        if not held_classes:
            raise InputError(f"data set {name!r}: the held-out folder {str(held_dir)!r} has "
                             "no class sub-folders; give PATH/test/<class>/ with images")
        index = {c: i for i, c in enumerate(classes)}
        for cls in held_classes:
            entries += [(p, index[cls], True) for p in _images_of(held_dir / cls, root, name)]

    pixels, digests = [], []
    for path, _, _ in entries:
        px, data = _read(path, name)
        pixels.append(px)
        digests.append((path.relative_to(root).as_posix(), hashlib.sha256(data).hexdigest()))

    sizes = Counter(px.shape[:2] for px in pixels)
    (height, width), _ = sizes.most_common(1)[0]
    odd = [(path, px.shape[:2]) for (path, _, _), px in zip(entries, pixels, strict=True)
           if px.shape[:2] != (height, width)]
    if odd:
        path, (h, w) = odd[0]
        raise InputError(f"data set {name!r}: images must all have one size; most are "
                         f"{width}×{height} but {str(path)!r} is {w}×{h}"
                         + (f" (and {len(odd) - 1} more)" if len(odd) > 1 else "")
                         + "; resize them to one size")
    if height != width:
        raise InputError(f"data set {name!r}: the images are {width}×{height} pixels; give "
                         "square images (crop or resize them)")
    channels = Counter(1 if px.ndim == 2 else 3 for px in pixels)
    target = 1 if channels[1] > channels[3] else 3
    if len(channels) > 1:
        minority = next(p for (p, _, _), px in zip(entries, pixels, strict=True)
                        if (1 if px.ndim == 2 else 3) != target)
        warnings.warn(f"data set {name!r}: {channels[1]} grey and {channels[3]} colour "
                      f"images; converted all to {'grey' if target == 1 else 'colour'} "
                      f"(e.g. {str(minority)!r})", stacklevel=2)
    images = np.stack([_to_channels(px, target) for px in pixels])
    labels = np.array([label for _, label, _ in entries], dtype=np.int64)
    if held_dir is not None:
        held = np.array([h for _, _, h in entries])
        split = f"given ({held_dir.name}/)"
    else:
        held = _made_split(labels, test_fraction, seed)
        split = f"made: {test_fraction:g} of each class held out, seed {seed}"
    files = [path for path, _, _ in entries]
    order = np.concatenate([np.flatnonzero(~held), np.flatnonzero(held)])
    n_train = int((~held).sum())
    if n_train == 0 or len(order) == n_train:
        raise InputError(f"data set {name!r}: {len(order)} image(s) make no "
                         f"{'training' if n_train == 0 else 'held-out'} split; give at least "
                         "two images per class (or a PATH/test/ folder with images)")
    return FolderImages(
        images[~held], labels[~held], images[held], labels[held], tuple(classes),
        [files[i] for i in order], [digests[i] for i in order] + [("split", split)], split)
