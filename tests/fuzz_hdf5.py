"""Hostile files in the CNN Filter DB HDF5 layout, built by code, and a harness that imports them in a worker.

The builders write what pandas and h5py write (``DataFrame.to_hdf`` in its default "fixed" format, as the
published ``dataset.h5``), then lie: pickled payloads in an object column, an object index level or a
PyTables attribute; ``/filters`` of the wrong shape or type or declared far larger than the file;
``filter_ids`` outside, overlapping or malformed; ``/meta`` datasets declared huge; flipped bytes (anywhere,
or in HDF5's own structures at the start of the file); truncated files.

:func:`cases` draws a seeded campaign of them (bench/fuzz_hdf5.py runs hundreds, tests/test_fuzz_hdf5.py a
bounded slice); :func:`run_imports` runs ``import_hdf5`` on each in a worker process (a fresh store per
file) with :func:`fuzzing.run_cases`, and a pickled payload that ran leaves its marker file behind.
"""

from __future__ import annotations

import os
import pickle
import random
import shlex
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

import fuzzing

# model_id, Name, Task, layers as (conv_depth, n_filters)
MODELS = [(0, "resnet_tiny", "Classification", [(0, 12), (1, 40), (2, 24)]),
          (3, "unet_tiny", "Segmentation", [(0, 8), (1, 30)])]
MARKER_SUFFIX = ".code-ran"  # a payload creates <file><suffix>: its existence proves that file code ran


class Payload:
    """Pickles to ``os.system("touch MARKER")``: whatever unpickles it runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - the pickle protocol
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def marker_of(path: Path) -> Path:
    return path.with_name(path.name + MARKER_SUFFIX)


def meta_frame(models=MODELS, *, strings: str = "object", payload: Path | None = None):
    """/meta as the published data set has it: a 4-level MultiIndex (with conv_depth_norm) and text columns;
    ``strings="object"`` as pandas 1.x kept them (object blocks), ``"str"`` as pandas 3 does."""
    import pandas as pd

    rows, start, layer_id = [], 0, 0
    for model_id, name, task, layers in models:
        depth = max(d for d, _ in layers)
        for conv_depth, n in layers:
            rows.append({"model_id": model_id, "conv_depth": conv_depth, "conv_depth_norm": conv_depth / max(depth, 1),
                         "layer_id": layer_id, "filter_ids": f"{start}:{start + n - 1}", "model": f"{name}.onnx",
                         "producer": "pytorch", "op_set": 11.0, "Name": name, "Task": task,
                         "Visual Category": "natural", "Training-Dataset": "ImageNet1k", "Paper": None,
                         "total_filters": sum(k for _, k in layers), "(3, 3) filters": sum(k for _, k in layers)})
            start += n
            layer_id += 1
    meta = pd.DataFrame(rows)
    if strings == "object":
        meta = meta.astype({c: object for c in meta.columns if meta[c].dtype.kind not in "iufb"})
    if payload is not None:
        notes = np.array(["fine"] * len(meta), dtype=object)
        notes[-1] = Payload(payload)
        meta["Notes"] = notes
    return meta.set_index(["model_id", "conv_depth", "conv_depth_norm", "layer_id"]), start


def write_layout(path: Path, models=MODELS, *, strings: str = "object", payload: Path | None = None,
                 filter_key: str = "filters", seed: int = 0) -> tuple[object, np.ndarray]:
    """A file in the layout of the published dataset.h5 (pandas writes /meta, h5py /filters)."""
    import h5py

    meta, n = meta_frame(models, strings=strings, payload=payload)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PerformanceWarning: pickled object columns (that is the point)
        meta.to_hdf(path, key="meta", mode="w")
    filters = np.random.default_rng(seed).normal(0, 0.05, (n, 9)).astype(np.float32)
    with h5py.File(path, "a") as h5:
        h5.create_dataset(filter_key, data=filters)
    return meta, filters


# ----------------------------------------------------------------------------------------- code in the file
def pickled_cell(path: Path) -> Path:
    """An object column whose last cell pickles os.system (inside the block's pickled numpy array)."""
    write_layout(path, payload=marker_of(path))
    return path


def pickled_index_level(path: Path) -> Path:
    """A MultiIndex level of mixed objects (pandas stores it as a pickled ObjectAtom) holding the payload."""
    import h5py

    meta, n = meta_frame()
    frame = meta.reset_index()
    frame["layer_id"] = np.array(list(frame["layer_id"][:-1]) + [Payload(marker_of(path))], dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame.set_index(["model_id", "conv_depth", "conv_depth_norm", "layer_id"]).to_hdf(path, key="meta", mode="w")
    with h5py.File(path, "a") as h5:
        h5.create_dataset("filters", data=np.zeros((n, 9), np.float32))
    return path


def pickled_attribute(path: Path, attribute: str = "name", node: str = "meta/axis1_level0") -> Path:
    """A PyTables attribute (bytes ending in '.', which PyTables unpickles on access) holding the payload."""
    import h5py

    write_layout(path)
    with h5py.File(path, "a") as h5:
        h5[node].attrs[attribute] = np.bytes_(pickle.dumps(Payload(marker_of(path)), protocol=0))
    return path


def pickled_global(path: Path, module: str, name: str) -> Path:
    """Block values whose pickle names ``module.name`` in place of numpy's array reconstruction."""
    import h5py

    write_layout(path)
    raw = b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n)R."  # GLOBAL, EMPTY_TUPLE, REDUCE
    with h5py.File(path, "a") as h5:
        node = _object_block(h5)
        node[0] = np.frombuffer(raw, np.uint8)
    return path


def _object_block(h5):
    for key in h5["meta"]:
        if key.endswith("_values") and h5["meta"][key].attrs.get("PSEUDOATOM") == b"object":
            return h5["meta"][key]
    raise AssertionError("no pickled object block written")


def pickle_bytes(path: Path, raw: bytes) -> Path:
    """Block values replaced by arbitrary bytes (a malformed or hostile pickle)."""
    import h5py

    write_layout(path)
    with h5py.File(path, "a") as h5:
        _object_block(h5)[0] = np.frombuffer(raw, np.uint8)
    return path


# ------------------------------------------------------------------------------------------- lying layouts
def filters_dataset(path: Path, make: Callable[[object], None]) -> Path:
    """The benign /meta with /filters replaced: ``make(h5)`` creates it."""
    import h5py

    write_layout(path)
    with h5py.File(path, "a") as h5:
        del h5["filters"]
        make(h5)
    return path


def declared_huge(path: Path, rows: int = 2**31, ids: str = "0:54999999") -> Path:
    """/filters declared (rows, 9), never written (a few KB on disk), and filter_ids pointing far into it."""
    import h5py

    write_layout(path, models=[(0, "huge", "Classification", [(0, 1)])])
    with h5py.File(path, "a") as h5:
        del h5["filters"]
        h5.create_dataset("filters", shape=(rows, 9), dtype="f4")
    return replace_ids(path, [ids])


def replace_ids(path: Path, ids: list[str]) -> Path:
    """Rewrite /meta's filter_ids strings in place (same frame, new text)."""
    import pandas as pd

    import h5py

    meta = pd.read_hdf(path, "meta")  # our own benign file: reading it with pandas is safe here
    meta = meta.iloc[: len(ids)].astype(object)  # text columns as one pickled object block, as published
    meta["filter_ids"] = np.array(ids, dtype=object)

    with h5py.File(path, "r") as h5:
        key = "filters" if "filters" in h5 else "filter"
        shape, dtype = h5[key].shape, h5[key].dtype
        data = h5[key][: min(shape[0], 4096)] if h5[key].id.get_storage_size() else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta.to_hdf(path, key="meta", mode="w")
    with h5py.File(path, "a") as h5:
        if data is not None and shape[0] <= 4096:
            h5.create_dataset(key, data=data)
        else:
            h5.create_dataset(key, shape=shape, dtype=dtype)
    return path


def meta_dataset_declared_huge(path: Path, node: str = "axis1_label0", rows: int = 2**40) -> Path:
    """A /meta dataset (the codes of an index level) declared with 2**40 entries, never written."""
    import h5py

    write_layout(path)
    with h5py.File(path, "a") as h5:
        attrs = dict(h5["meta"][node].attrs)
        del h5["meta"][node]
        ds = h5["meta"].create_dataset(node, shape=(rows,), dtype="i1", chunks=(1 << 16,))
        for key, value in attrs.items():
            ds.attrs[key] = value
    return path


def truncated(path: Path, fraction: float) -> Path:
    write_layout(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def many_models(path: Path, n: int, filters_per_model: int = 1) -> Path:
    """``n`` models of one layer each (the import's per-model cost, without the cost of their data)."""
    write_layout(path, models=[(i, f"m{i}", "Classification", [(0, filters_per_model)]) for i in range(n)],
                 seed=n)
    return path


# ---------------------------------------------------------------------------------------------- campaign
FILTERS_LIES: dict[str, Callable[[object], None]] = {
    "1d": lambda h5: h5.create_dataset("filters", data=np.zeros(9 * 114, np.float32)),
    "3d": lambda h5: h5.create_dataset("filters", data=np.zeros((114, 3, 3), np.float32)),
    "width0": lambda h5: h5.create_dataset("filters", shape=(114, 0), dtype="f4"),
    "strings": lambda h5: h5.create_dataset("filters", data=np.full((114, 9), b"abc")),
    "compound": lambda h5: h5.create_dataset("filters", data=np.zeros((114, 9), dtype=[("a", "f4"), ("b", "i4")])),
    "ints": lambda h5: h5.create_dataset("filters", data=np.ones((114, 9), np.int32)),
    "group": lambda h5: h5.create_group("filters"),
    "short": lambda h5: h5.create_dataset("filters", data=np.zeros((50, 9), np.float32)),
    "huge-chunk": lambda h5: h5.create_dataset("filters", shape=(2**30, 9), dtype="f4", chunks=(2**28, 1)),
}
ID_LIES = ["0:99999999999", "5:2", "-1:4", "a:b", "0:3;rm -rf /", "0:11", " 1 : 2 ", "0:0"]
CODE = ["cell", "index", "attribute", "global:os.system", "global:builtins.eval", "global:subprocess.Popen",
        "global:numpy.load", "global:numpy.ndarray.__new__"]


def build(kind: str, path: Path, rng: random.Random) -> Path:
    """One hostile file of class ``kind`` (a key of :data:`KINDS`)."""
    return KINDS[kind](path, rng)


def _code(path: Path, rng: random.Random) -> Path:
    what = rng.choice(CODE)
    if what == "cell":
        return pickled_cell(path)
    if what == "index":
        return pickled_index_level(path)
    if what == "attribute":  # one that pandas.read_hdf reads, so that the payload would run there
        node = rng.choice(["meta/axis1_level0", "meta/axis0", "meta/block0_items", "meta"])
        names = ["pandas_type", "encoding", "axis0_variety", "nblocks"] if node == "meta" else ["name", "kind"]
        return pickled_attribute(path, rng.choice(names), node)
    module, name = what.split(":", 1)[1].rsplit(".", 1)
    return pickled_global(path, module, name)


def _reduce_arrays(path: Path, rng: random.Random) -> Path:
    """numpy's own globals, abused: a huge shape for _reconstruct, the ndarray constructor, a wrong dtype."""
    choices = [
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\x00\x00\x40\x85C\x01b\x87R.",
        b"\x80\x02cnumpy\nndarray\n\x8a\x05\x00\x00\x00\x00\x01\x85R.",  # ndarray((2**32,)) if it were the class
        b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R.",  # a dtype, not an array
        b"\x80\x02]q\x00(}q\x01e.",  # a list holding a dict
        b"\x80\x02" + b"(" * 100_000 + b"t" * 100_000 + b".",  # deep nesting
        b"\x80\x02}.",
        b"",
        short_object_array(rng.choice([2, 10**6, 2 * 10**8])),
    ]
    return pickle_bytes(path, rng.choice(choices))


def short_object_array(n: int) -> bytes:
    """A pickled object array that declares ``n`` values and holds one (numpy's own unpickling can crash)."""
    raw = pickle.dumps(np.array(["a"], dtype=object), protocol=2)
    at = raw.index(b"K\x01K\x01\x85")  # state version 1, shape (1,)
    return raw[:at] + b"K\x01J" + n.to_bytes(4, "little", signed=True) + b"\x85" + raw[at + 5:]


def _filters(path: Path, rng: random.Random) -> Path:
    return filters_dataset(path, FILTERS_LIES[rng.choice(sorted(FILTERS_LIES))])


def _ids(path: Path, rng: random.Random) -> Path:
    write_layout(path)
    ids = ["0:11", "12:51", "52:75", "76:83", "84:113"]
    ids[rng.randrange(len(ids))] = rng.choice(ID_LIES)
    return replace_ids(path, ids)


def _huge(path: Path, rng: random.Random) -> Path:
    if rng.random() < 0.5:
        return declared_huge(path, rows=rng.choice([2**31, 2**40, 10**15]),
                             ids=rng.choice(["0:54999999", "0:9999999", "1000:2000000000"]))
    return meta_dataset_declared_huge(path, rng.choice(["axis1_label0", "axis1_level3", "block1_values"]))


def _bytes(path: Path, rng: random.Random) -> Path:
    """Seeded byte flips, truncations and lying words of a benign file (fuzzing.mutants)."""
    write_layout(path)
    ((_, data),) = fuzzing.mutants(path.read_bytes(), rng.randrange(2**31), 1)
    path.write_bytes(data)
    return path


def _header(path: Path, rng: random.Random) -> Path:
    """Byte flips in the first 16 KiB, where HDF5 keeps its superblock, object headers and B-tree nodes."""
    write_layout(path)
    data = bytearray(path.read_bytes())
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(min(len(data), 16384))] = rng.randrange(256)
    path.write_bytes(bytes(data))
    return path


def _truncated(path: Path, rng: random.Random) -> Path:
    return truncated(path, rng.random())


KINDS: dict[str, Callable[[Path, random.Random], Path]] = {
    "code": _code, "arrays": _reduce_arrays, "filters": _filters, "ids": _ids, "huge": _huge,
    "bytes": _bytes, "header": _header, "truncated": _truncated,
}


def cases(root: Path, seed: int, per_kind: int, kinds: list[str] | None = None) -> list[tuple[str, Path]]:
    """``per_kind`` seeded files of every class (or of ``kinds``): [(class, path)]."""
    rng = random.Random(seed)
    out = []
    for kind in kinds or list(KINDS):
        for i in range(per_kind):
            path = root / f"{kind}-{i}.h5"
            build(kind, path, rng)
            out.append((kind, path))
    return out


# The worker: import_hdf5 of each listed file into a fresh store, one JSON line per file (fuzzing.run_cases).
WORKER = r"""
import json, os, resource, shutil, sys, tempfile, time
from pathlib import Path
from filterdb.errors import FilterDBError
from filterdb.ingest import import_hdf5
from filterdb.store import init_store
""" + fuzzing.PEAK_KIB_SOURCE + r"""limit = int(sys.argv[1])
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
for line in open(sys.argv[2], encoding="utf-8"):
    path = line.rstrip("\n")
    print(json.dumps({"start": path}), flush=True)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with init_store(Path(tmp) / "store") as store:
                import_hdf5(store, path)
            outcome, detail = "ok", ""
        except FilterDBError as e:
            outcome, detail = "refused", type(e).__name__ + ": " + str(e)[:200]
        except BaseException as e:
            outcome, detail = "unexpected", type(e).__name__ + ": " + str(e)[:200]
    if os.path.exists(path + ".code-ran"):
        outcome, detail = "code ran", "the file's pickled payload ran"
    print(json.dumps({"path": path, "outcome": outcome, "detail": detail, "seconds": time.perf_counter() - t,
                      "rss_kib": _peak_kib()}), flush=True)
"""


def run_imports(paths: list[Path], *, case_timeout: float = 120.0, address_limit: int = 0) -> list[fuzzing.Outcome]:
    """Import every path in worker processes; a crash or hang is charged to the file being imported."""
    env = {k: v for k, v in os.environ.items() if k != "FILTERDB_MAX_MEMORY"}
    return fuzzing.run_cases(paths, case_timeout=case_timeout, address_limit=address_limit, env=env,
                             worker=WORKER)
