"""Reader for pickle-based containers (format "pickle"): joblib files (plain, zlib, gzip, lz4) and plain pickles.

Unpickling runs code from the file, so these files are refused unless the user passes ``trust_pickle``.
With trust, ``joblib.load`` unpickles the file and the conv kernels are looked for among the arrays it holds
(nested dicts, lists and tuples are walked in order; layer names are the key/index paths, e.g. ``"3"``):

* an object that a registered object reader accepts (a pickled ``torch.nn.Module``) is read by that reader;
* a named array is classified by the state_dict rules of :mod:`._statedict` (``*.weight`` = OIHW,
  ``*kernel`` = Keras HWIO);
* any other 4-D float array is a Conv2d kernel whose layout is guessed from its shape (each layer then
  carries a note saying so). HWIO puts the kernel in dims 0, 1, OIHW in dims 2, 3. A pair "fits" a
  kernel when both its sizes are <= ``MAX_KERNEL`` (11). If exactly one pair fits, it is the kernel; if both
  fit, a square pair beats a non-square one, then the pair with the smaller product wins; a full tie
  ((3, 3, 3, 3)) is read as HWIO, because bare arrays in a pickle usually come from Keras
  ``model.get_weights()``. HWIO becomes OIHW by ``transpose(3, 2, 0, 1)``. A Keras depthwise kernel
  (kh, kw, C, mult) cannot be told from a dense one without its name.

Bare 3-D and 5-D arrays are never taken as convolutions: in such lists they are usually PReLU alphas
((1, 1, C) in mtcnn) or other per-channel parameters.
"""

from __future__ import annotations

import pickle
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..depth import with_order_depth
from ..errors import ModelFormatError, UnsafeFormatError, missing_dependency
from ..types import ConvLayer, ModelInfo, ModelRecord
from ._registry import ReadOptions, make_layer, read_object, register_reader
from ._statedict import FLOAT_DTYPES, TensorEntry, count_ops, count_parameters, plan_conv, to_channels_first

__all__ = ["PickleReader", "guess_kernel_layout"]

LZ4_MAGIC = b"\x04\x22\x4d\x18"
GZIP_MAGIC = b"\x1f\x8b"
# torch's legacy format is a pickle too, but it starts with torch's magic number: the torch reader owns it.
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"
MAX_KERNEL = 11  # largest kernel side the layout guess accepts (7x7 stems and 11x11 AlexNet stems fit)
MAX_DEPTH = 8  # how deep nested containers are walked


def _is_pickle(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5 and not head.startswith(TORCH_LEGACY_MAGIC)


def _is_zlib(head: bytes) -> bool:
    # RFC 1950: deflate method (low nibble 8), window <= 32K, header checksum a multiple of 31.
    return len(head) >= 2 and head[0] == 0x78 and ((head[0] << 8) | head[1]) % 31 == 0


def _container(head: bytes) -> str | None:
    """Which pickle container the first bytes announce, None when none."""
    if head.startswith(LZ4_MAGIC):
        return "lz4"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if _is_zlib(head):
        return "zlib"
    if _is_pickle(head):
        return "pickle"
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _refuse(path: Path) -> UnsafeFormatError:
    return UnsafeFormatError(
        f"{path}: refused to load a pickle file: unpickling runs arbitrary code from the file; if you trust it, "
        "pass --trust-pickle on the command line or trust_pickle=True in Python"
    )


def _unpickle(path: Path, container: str) -> Any:
    """joblib.load (handles joblib's compressed containers); a plain pickle also loads without joblib."""
    try:
        import joblib
    except ImportError as e:
        if container != "pickle":
            raise missing_dependency("joblib", f"reading {container}-compressed joblib files", "pickle") from e
        with open(path, "rb") as fh:
            return pickle.load(fh)  # noqa: S301 - the user passed trust_pickle
    if container == "lz4":
        try:
            import lz4.frame  # noqa: F401
        except ImportError as e:
            raise missing_dependency("lz4", "reading lz4-compressed joblib files", "pickle") from e
    return joblib.load(path)


def _as_array(value: Any) -> np.ndarray | None:
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        tensor = value.detach().cpu()
        return (tensor.float() if str(tensor.dtype) == "torch.bfloat16" else tensor).numpy()
    return None


def _walk(obj: Any, path: str = "", depth: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    """(name, array) for every array in nested dicts, lists and tuples, in container order."""
    array = _as_array(obj)
    if array is not None:
        yield path, array
        return
    if depth >= MAX_DEPTH:
        return
    if isinstance(obj, dict):
        items = [(str(k), v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(obj)]
    else:
        return
    for key, value in items:
        yield from _walk(value, f"{path}.{key}" if path else key, depth + 1)


def _fits(pair: tuple[int, ...]) -> bool:
    return max(pair) <= MAX_KERNEL


def guess_kernel_layout(shape: tuple[int, ...]) -> str:
    """``"channels_last"`` (HWIO) or ``"channels_first"`` (OIHW) for a bare 4-D kernel (rule in the module doc).

    Examples
    --------
    >>> guess_kernel_layout((3, 3, 3, 10)), guess_kernel_layout((10, 3, 3, 3)), guess_kernel_layout((1, 1, 32, 4))
    ('channels_last', 'channels_first', 'channels_last')
    """
    first, last = tuple(shape[:2]), tuple(shape[2:])
    if _fits(first) != _fits(last):
        return "channels_last" if _fits(first) else "channels_first"
    square_first, square_last = first[0] == first[1], last[0] == last[1]
    if _fits(first) and square_first != square_last:
        return "channels_last" if square_first else "channels_first"
    if np.prod(first) != np.prod(last):
        return "channels_last" if np.prod(first) < np.prod(last) else "channels_first"
    return "channels_last"


def _layer(name: str, array: np.ndarray) -> ConvLayer | None:
    """A conv layer for a named array, or None when the array is not a conv kernel."""
    dtype = str(array.dtype)
    plan = plan_conv(TensorEntry(name, tuple(array.shape), dtype))
    if plan is not None:
        weight, groups = to_channels_first(array, plan.layout)
        op = "DepthwiseConv2D" if plan.layout == "keras_depthwise" else f"Conv{plan.spatial_ndim}d"
        return make_layer(plan.module, op, weight, groups=groups, transposed=plan.transposed, storage_dtype=dtype,
                          notes=("groups unknown in a pickle of arrays: assumed 1",) if groups == 1 else ())
    if array.ndim != 4 or dtype not in FLOAT_DTYPES:
        return None
    layout = guess_kernel_layout(tuple(array.shape))
    weight, _ = to_channels_first(array, layout)
    guess = "HWIO (Keras)" if layout == "channels_last" else "OIHW (PyTorch)"
    notes = (f"bare array: layout guessed as {guess} from its shape", "groups unknown: assumed 1")
    return make_layer(name or "array", "Conv2d", weight, storage_dtype=dtype, notes=notes)


class PickleReader:
    """joblib files and plain pickles (refused unless ``trust_pickle``)."""

    format = "pickle"
    extensions: tuple[str, ...] = (".pkl", ".pickle", ".joblib", ".lz4", ".jbl")
    description = "joblib / pickle of arrays or modules (runs code on load: needs --trust-pickle)"

    def sniff(self, path: Path, head: bytes) -> bool:
        container = _container(head)
        if container in ("lz4", "pickle"):
            return True
        # zlib and gzip headers are short and common: only claim them with a pickle-ish extension.
        return container is not None and path.suffix.lower() in self.extensions

    def read(self, path: Path, options: ReadOptions) -> ModelRecord:
        with open(path, "rb") as fh:
            head = fh.read(16)
        container = _container(head)
        if container is None:
            raise ModelFormatError(f"{path}: not a pickle or joblib file (no pickle, lz4, zlib or gzip header)")
        if not options.trust_pickle:
            raise _refuse(path)
        try:
            obj = _unpickle(path, container)
        except (pickle.UnpicklingError, EOFError, zlib.error, ValueError, OSError, RuntimeError) as e:
            label = "pickle" if container == "pickle" else f"{container}-compressed joblib"
            raise ModelFormatError(f"{path}: not a readable {label} file, truncated or corrupt "
                                   f"({type(e).__name__}: {_first_line(e)})") from e
        record = read_object(obj, options)
        if record is not None:  # a pickled nn.Module or Keras model
            info = ModelInfo(**{**record.info.__dict__, "format": self.format, "source": str(path),
                                "path": str(path), "notes": record.info.notes + (f"a pickled {type(obj).__name__}",)})
            return ModelRecord(info=info, layers=record.layers)
        return self._arrays_record(path, obj)

    def _arrays_record(self, path: Path, obj: Any) -> ModelRecord:
        arrays = list(_walk(obj))
        layers = with_order_depth([layer for name, array in arrays if (layer := _layer(name, array)) is not None])
        entries = [TensorEntry(name, tuple(a.shape), str(a.dtype)) for name, a in arrays]
        info = ModelInfo(source=str(path), format=self.format, path=str(path), producer="joblib",
                         op_counts=count_ops(layers), n_parameters=count_parameters(entries),
                         notes=("no graph in a pickle of arrays: conv_depth is the order of the kernels",))
        return ModelRecord(info=info, layers=layers)


register_reader(PickleReader())
