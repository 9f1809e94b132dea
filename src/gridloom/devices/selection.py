"""Naming units of a fleet in commands: integer positions or a boolean mask, checked."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import numpy.typing as npt

from gridloom.errors import DeviceInputError, UnknownDevice

IndexArray = npt.NDArray[np.intp]
_T = TypeVar("_T", bound=np.generic)


def select_units(units: npt.ArrayLike, n: int, noun: str) -> IndexArray:
    """Indices from integer positions or a boolean mask of length ``n``."""
    idx = np.atleast_1d(np.asarray(units))
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise DeviceInputError(f"a {noun} mask has {n} entries, got shape {idx.shape}")
        return np.flatnonzero(idx)
    if idx.size == 0:
        return np.zeros(0, dtype=np.intp)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise DeviceInputError(f"{noun}s are given as integer positions or a boolean mask, got {idx.dtype} {idx.shape}")
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise UnknownDevice(f"no {noun} {bad[0]} in a fleet of {n}", devices=[str(b) for b in bad[:10]])
    return idx.astype(np.intp)


def readonly(array: npt.NDArray[_T]) -> npt.NDArray[_T]:
    """A view callers cannot write through: fleet state changes only by commands."""
    view = array.view()
    view.flags.writeable = False
    return view
