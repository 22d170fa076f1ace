"""A data set in one NumPy ``.npz`` archive: ``x_train, y_train, x_test, y_test``.

Images in any layout :mod:`.arrays` accepts (``(N, H, W)``, NHWC, NCHW; uint8 or float);
labels ``(N,)`` class indices. Read without unpickling (``allow_pickle=False``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import InputError
from .arrays import to_labels, to_nchw

KEYS = ("x_train", "y_train", "x_test", "y_test")


def read_npz(path: str | Path, name: str | None = None) -> dict[str, np.ndarray]:
    """``{x_train, x_test: (N, C, S, S) uint8 or float32; y_train, y_test: int64 (N,)}``
    from the archive at ``path``, checked (``name``: the data set named in messages)."""
    path = Path(path).expanduser()
    name = name or str(path)
    if not path.is_file():
        raise InputError(f"data set {name!r}: file {str(path)!r} does not exist; give an "
                         f".npz file holding {', '.join(KEYS)}")
    if not zipfile.is_zipfile(path):
        raise InputError(f"data set {name!r}: {str(path)!r} is not an .npz (zip) archive; "
                         f"save one with np.savez(path, {'=..., '.join(KEYS)}=...)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in KEYS if k not in archive.files]
            if missing:
                raise InputError(f"data set {name!r}: {str(path)!r} lacks "
                                 f"{', '.join(missing)} (it holds "
                                 f"{', '.join(archive.files) or 'nothing'}); give an .npz "
                                 f"holding {', '.join(KEYS)}")
            raw = {k: archive[k] for k in KEYS}
    except InputError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise InputError(f"data set {name!r}: {str(path)!r} holds pickled objects, "
                             "which are not loaded; save plain numeric arrays "
                             "(np.savez(path, x_train=..., ...))") from None
        raise InputError(f"data set {name!r}: {str(path)!r} cannot be read as .npz ({exc})"
                         ) from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"data set {name!r}: {str(path)!r} cannot be read as .npz ({exc}); "
                         "the file is damaged or not an .npz archive") from None
    out = {}
    for split in ("train", "test"):
        x = to_nchw(raw[f"x_{split}"], f"data set {name!r}: x_{split}")
        out[f"x_{split}"] = x
        out[f"y_{split}"] = to_labels(raw[f"y_{split}"], f"data set {name!r}: y_{split}",
                                      len(x))
    if out["x_train"].shape[1:] != out["x_test"].shape[1:]:
        raise InputError(f"data set {name!r}: x_train images are (C, H, W) = "
                         f"{out['x_train'].shape[1:]} but x_test's are "
                         f"{out['x_test'].shape[1:]}; both splits need one shape")
    if out["x_train"].dtype != out["x_test"].dtype:
        raise InputError(f"data set {name!r}: x_train is {out['x_train'].dtype} but x_test "
                         f"is {out['x_test'].dtype}; give both splits one pixel type")
    return out
