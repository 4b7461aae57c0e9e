"""HDF5 files are read only from inside themselves: no external links, external storage or virtual datasets.

Used by the Keras reader and the CNN Filter DB import (``store/_exchange.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UnsafeFormatError

__all__ = ["refuse_outside_data"]


def refuse_outside_data(path: Path, f: Any) -> None:
    """Refuse external links, external storage and virtual datasets: their bytes live in other files.

    A hostile .h5 could otherwise make filterdb read (and ``export`` return) any file on the machine.
    """
    import h5py  # a core dependency; imported here so that importing the readers costs nothing

    # The visitors return a finding, which stops the visit (raising inside an h5py callback loses the message).
    def link(name: str, value: Any) -> tuple[str, str] | None:
        if isinstance(value, h5py.ExternalLink):
            return name, f"is an external link to {value.filename!r}"
        return None

    def obj(name: str, value: Any) -> tuple[str, str] | None:
        if isinstance(value, h5py.Dataset):
            if value.external:
                return name, "keeps its data in an external file"
            if value.is_virtual:
                return name, "is a virtual dataset mapping other files"
        return None

    found = f.visititems_links(link) or f.visititems(obj)
    if found:
        name, why = found
        raise UnsafeFormatError(f"{path}: {name!r} {why}; filterdb reads only data stored inside the model "
                                "file, so it was refused (re-save the model with its weights in the file)")
