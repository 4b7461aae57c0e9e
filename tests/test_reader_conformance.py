"""What every registered reader must do with junk, parametrised over the registry: a new reader is covered
the day it registers. Junk is read both by extension and with the reader forced (``format=``), so each
reader's own ``read`` meets it; the answer is always a FilterDBError naming the file, never another error."""

from __future__ import annotations

import numpy as np
import pytest

from filterdb.errors import FilterDBError
from filterdb.readers import ReadOptions, read_path, registered_readers

READERS = sorted(registered_readers())
JUNK = {
    "random": np.random.default_rng(7).integers(0, 256, 8192, dtype=np.uint8).tobytes(),
    "text": b"this is not a model\n" * 50,
    "one-byte": b"\x08",
    "zip-magic": b"PK\x03\x04" + bytes(60),
    "hdf5-magic": b"\x89HDF\r\n\x1a\n" + bytes(600),
    "tflite-id": bytes(4) + b"TFL3" + bytes(100),
    "safetensors-header": (20).to_bytes(8, "little") + b'{"a": {"dtype": "F32"',
    "pickle-proto": b"\x80\x04\x95" + bytes(40),
    "protobuf-like": b"\x08\x07\x12\x04abcd\x3a\xff\xff\xff\xff\x0f",
}


def _extensions() -> list[tuple[str, str]]:
    return sorted({(name, ext) for name, reader in registered_readers().items() for ext in reader.extensions})


@pytest.mark.parametrize("junk", sorted(JUNK))
@pytest.mark.parametrize("fmt", READERS)
def test_forced_reader_refuses_junk_with_a_named_error(tmp_path, fmt, junk):
    path = tmp_path / f"junk-{junk}.bin"
    path.write_bytes(JUNK[junk])
    with pytest.raises(FilterDBError, match=path.name):
        read_path(path, ReadOptions(format=fmt))


@pytest.mark.parametrize("junk", ["random", "text"])
@pytest.mark.parametrize("fmt, ext", _extensions())
def test_junk_with_every_model_extension(tmp_path, fmt, ext, junk):
    path = tmp_path / f"junk{ext}"
    path.write_bytes(JUNK[junk])
    with pytest.raises(FilterDBError, match=path.name):
        read_path(path)


@pytest.mark.parametrize("fmt", READERS)
def test_empty_file(tmp_path, fmt):
    path = tmp_path / "empty.model"
    path.write_bytes(b"")
    with pytest.raises(FilterDBError, match=r"empty\.model: the file is empty"):
        read_path(path, ReadOptions(format=fmt))


@pytest.mark.parametrize("fmt", READERS)
def test_every_reader_describes_itself(fmt):
    reader = registered_readers()[fmt]
    assert reader.description and all(ext.startswith(".") and ext == ext.lower() for ext in reader.extensions)
