"""The LAPACK routines of the spectra's CPU path, callable from several threads at once.

SciPy's ``scipy.linalg.lapack`` wrappers hold the GIL while LAPACK runs, so threads
calling them take turns. The same routines, from ``scipy.linalg.cython_lapack``
(SciPy's public C interface), called through ctypes run with the GIL released.
Arrays are Fortran-ordered float64; integers are LAPACK's 32-bit ``int``.
"""

from __future__ import annotations

import ctypes
from functools import cache

import numpy as np
from scipy.linalg import cython_lapack

_ptr = ctypes.c_void_p


@cache
def _routine(name: str, n_args: int):
    """``cython_lapack``'s ``name`` as a ctypes function (releases the GIL when called)."""
    capsule = cython_lapack.__pyx_capi__[name]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = _ptr, [ctypes.py_object, ctypes.c_char_p]
    address = get_pointer(capsule, get_name(capsule))
    return ctypes.CFUNCTYPE(None, *([_ptr] * n_args))(address)


def _ref(x) -> int:
    return ctypes.addressof(x) if isinstance(x, ctypes._SimpleCData) else x.ctypes.data


def dsytrd(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tridiagonal reduction ``Qᵀ G Q = T`` of a symmetric matrix (lower triangle used).

    Returns ``(c, d, e, tau)`` as LAPACK's ``dsytrd(uplo="L")``: ``d`` (n) and ``e``
    (n-1) the diagonals of T, the reflectors of Q below the first subdiagonal of
    ``c`` (n × n, Fortran order) with factors ``tau`` (n-1).
    """
    n = gram.shape[0]
    c = np.array(gram, dtype=np.float64, order="F", copy=True)
    d, e, tau = np.empty(n), np.empty(max(n - 1, 1)), np.empty(max(n - 1, 1))
    # the ctypes ints stay referenced until the calls return
    info, size, lwork = ctypes.c_int(0), ctypes.c_int(n), ctypes.c_int(-1)
    fn = _routine("dsytrd", 10)
    work = np.empty(1)
    fn(b"L", _ref(size), _ref(c), _ref(size), _ref(d), _ref(e), _ref(tau), _ref(work),
       _ref(lwork), _ref(info))  # workspace query
    lwork = ctypes.c_int(max(1, int(work[0])))
    work = np.empty(lwork.value)
    fn(b"L", _ref(size), _ref(c), _ref(size), _ref(d), _ref(e), _ref(tau), _ref(work),
       _ref(lwork), _ref(info))
    if info.value != 0:
        raise np.linalg.LinAlgError(f"dsytrd failed (info={info.value})")
    return c, d, e[: n - 1], tau[: n - 1]


def dsterf(d: np.ndarray, e: np.ndarray) -> np.ndarray:
    """All eigenvalues, ascending, of the symmetric tridiagonal matrix (d, e)."""
    d = np.array(d, dtype=np.float64, copy=True)
    e = np.array(np.append(e, 0.0), dtype=np.float64)
    info, size = ctypes.c_int(0), ctypes.c_int(d.size)
    _routine("dsterf", 4)(_ref(size), _ref(d), _ref(e), _ref(info))
    if info.value != 0:
        raise np.linalg.LinAlgError(f"dsterf did not converge (info={info.value})")
    return d
