"""filterdb: read, check, store and analyse the trained convolution filters of CNNs."""

from __future__ import annotations

from ._read import read_model
from .errors import (
    FilterDBError,
    MissingDependencyError,
    ModelFormatError,
    ModelNotFoundError,
    SourceError,
    UnsafeFormatError,
    UnsupportedFormatError,
)
from .types import ConvLayer, ModelInfo, ModelRecord

__version__ = "0.1.0"

__all__ = [
    "ConvLayer",
    "FilterDBError",
    "MissingDependencyError",
    "ModelFormatError",
    "ModelInfo",
    "ModelNotFoundError",
    "ModelRecord",
    "SourceError",
    "UnsafeFormatError",
    "UnsupportedFormatError",
    "read_model",
    "__version__",
]
