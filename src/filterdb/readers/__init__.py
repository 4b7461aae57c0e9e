"""Model readers: one private module per format, each registering itself here.

Importing this package registers every built-in reader. Readers import their heavy third-party
libraries lazily, so registration costs nothing.
"""

from __future__ import annotations

# Sniffing tries readers in registration order: formats with an exact magic number first, ONNX (a bare
# protobuf, recognised by a heuristic) last.
from . import _tflite, _keras, _keras_live, _torchscript, _torch, _safetensors, _pickle, _onnx  # noqa: F401,I001  (registration)
from ._registry import (
    ObjectReader,
    Reader,
    ReadOptions,
    make_layer,
    object_reader_for,
    read_object,
    read_path,
    reader_for_path,
    register_object_reader,
    register_reader,
    registered_readers,
)

__all__ = [
    "ObjectReader",
    "Reader",
    "ReadOptions",
    "make_layer",
    "object_reader_for",
    "read_object",
    "read_path",
    "reader_for_path",
    "register_object_reader",
    "register_reader",
    "registered_readers",
]
