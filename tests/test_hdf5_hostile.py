"""import-hdf5 treats a CNN Filter DB ``dataset.h5`` as hostile input (issue 17, items 1, 4 and 12).

Every file is built here with the real writers (pandas ``DataFrame.to_hdf`` in its default "fixed" format, h5py)
and then made to lie (tests/fuzz_hdf5.py). The reference for what /meta holds is ``pandas.read_hdf`` on the
same benign file; on the hostile ones it shows that the payload is live: pandas runs it, filterdb does not.
"""

from __future__ import annotations

import contextlib
import zlib

import numpy as np
import pandas as pd
import pytest

import fuzz_hdf5 as hostile
from filterdb._budget import MemoryBudget
from filterdb.errors import MemoryBudgetError, ModelFormatError, UnsafeFormatError
from filterdb.ingest import import_hdf5
from filterdb.store import init_store, iter_hdf5_models
from filterdb.store._exchange import export_hdf5
from filterdb.store._pandas_h5 import read_fixed_frame
from helpers import run_cli, snapshot
from test_fuzz_crafted import assert_refused, cli  # noqa: F401 - cli is a fixture

h5py = pytest.importorskip("h5py")
pytest.importorskip("tables")  # only to write the files (and to show what pandas.read_hdf would run)


def read_meta(path):
    with h5py.File(path, "r") as h5:
        return read_fixed_frame(h5["meta"], path, MemoryBudget.for_file(path))


def assert_same_frame(got, expected):
    """Equal values; missing text is None or NaN depending on the pandas version (3 reads it as str/NaN)."""
    def plain(frame):
        return frame.astype(object).where(frame.notna(), None)

    pd.testing.assert_frame_equal(plain(got), plain(expected), check_dtype=False, check_index_type=False,
                                  check_column_type=False)


def has_pickled_objects(path) -> bool:
    with h5py.File(path, "r") as h5:
        return any(node.attrs.get("PSEUDOATOM") == b"object" for node in h5["meta"].values())


def refused(capsys, tmp_path, path, *words):
    """``filterdb import-hdf5`` of ``path``: exit 1, one line naming the file and saying ``words``."""
    code, out, err = run_cli(capsys, "import-hdf5", "--init", tmp_path / "store", path)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1, err
    assert len(lines) == 1 and lines[0].startswith("error:") and path.name in lines[0], err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------------ item 1: no code
@pytest.mark.parametrize("strings", ["object", "str"], ids=["pandas-1-object-columns", "pandas-3-str-columns"])
def test_meta_with_text_columns_and_multiindex_imports_as_pandas_reads_it(tmp_path, strings):
    path = tmp_path / "dataset.h5"
    _, filters = hostile.write_layout(path, strings=strings)
    assert has_pickled_objects(path)  # the text columns really are pickled ObjectAtom arrays
    reference = pd.read_hdf(path, "meta")  # the benign file: pandas is the reference
    meta = read_meta(path)
    assert list(meta.index.names) == ["model_id", "conv_depth", "conv_depth_norm", "layer_id"]
    assert_same_frame(meta, reference)

    store = init_store(tmp_path / "zoo", dtype="float32")
    results = import_hdf5(store, path)
    ref = reference.reset_index()
    first = ref.groupby("model_id", sort=True).first()
    assert [r.model for r in results] == list(first["Name"])
    models = store.models().set_index("model")
    for name, row in first.set_index("Name").iterrows():
        assert models.loc[name, "task"] == row["Task"]
        assert models.loc[name, "visual_category"] == row["Visual Category"]
        assert models.loc[name, "training_dataset"] == row["Training-Dataset"]
        assert pd.isna(models.loc[name, "paper"])  # None in the file
    layers = store.layers().sort_values(["model_id", "layer_index"])
    assert list(layers["conv_depth_norm"]) == list(ref["conv_depth_norm"])
    assert list(layers["conv_depth"]) == list(ref["conv_depth"])
    raw = np.concatenate(list(store.iter_filters("3x3", scaled=False)))
    assert np.array_equal(raw, filters)  # float32 store, rows in file order


@pytest.mark.parametrize("build", [hostile.pickled_cell, hostile.pickled_index_level, hostile.pickled_attribute],
                         ids=["object-cell", "object-index-level", "pytables-attribute"])
def test_a_pickled_payload_is_refused_and_runs_nothing(capsys, tmp_path, build):
    path = build(tmp_path / "dataset.h5")
    marker = hostile.marker_of(path)
    message = refused(capsys, tmp_path, path, "/meta/", "posix.system", "nothing of it ran")
    assert "import-hdf5" not in message
    assert not marker.exists()
    assert not (tmp_path / "store" / "shards").exists() or not any((tmp_path / "store" / "shards").rglob("*.arrow"))
    with contextlib.suppress(ValueError):  # os.system's 0 may then break the index; it ran all the same
        pd.read_hdf(path, "meta")  # what filterdb refused to do: pandas runs the payload
    assert marker.exists()


@pytest.mark.parametrize("module, name", [("builtins", "eval"), ("numpy", "load"), ("subprocess", "Popen"),
                                          ("numpy.core.multiarray", "_reconstructx")])
def test_any_global_but_numpy_array_reconstruction_is_refused(tmp_path, module, name):
    path = hostile.pickled_global(tmp_path / "dataset.h5", module, name)
    with pytest.raises(UnsafeFormatError, match=f"pickles {module}.{name};"):
        list(iter_hdf5_models(path))


@pytest.mark.parametrize("raw, words", [
    # numpy's own globals, abused: _reconstruct of 2**30 elements, the ndarray constructor, a bare dtype
    (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\x00\x00\x40\x85C\x01b\x87R.",
     "shape (1073741824,)"),
    (b"\x80\x02cnumpy\nndarray\n\x8a\x05\x00\x00\x00\x00\x01\x85R.", "not callable"),
    (b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R.", "not a 1-D or 2-D numpy array"),
    (b"\x80\x02]q\x00(}q\x01e.", "not a 1-D or 2-D numpy array"),
    (b"\x80\x02}.", "unpickles to dict"),
    (b"", "not a readable pickled array"),
    (b"\x80\x02" + b"(" * 10_000 + b"t" * 10_000 + b".", "not a 1-D or 2-D numpy array"),
])
def test_malformed_or_abusive_pickles_are_format_errors(tmp_path, raw, words):
    path = hostile.pickle_bytes(tmp_path / "dataset.h5", raw)
    with pytest.raises(ModelFormatError, match="/meta/block") as info:
        list(iter_hdf5_models(path))
    assert words in str(info.value) and str(path) in str(info.value)


def test_an_object_array_with_fewer_values_than_its_shape_is_refused(tmp_path):
    """numpy's own ndarray.__setstate__ trusts that the list fills the shape (it can crash the interpreter on
    this one); the safe reader checks shape, dtype and data before building anything."""
    path = hostile.pickle_bytes(tmp_path / "dataset.h5", hostile.short_object_array(200_000_000))
    with pytest.raises(ModelFormatError, match=r"an object array of shape \(200000000,\) with 1 values"):
        read_meta(path)


def test_an_object_array_of_anything_but_plain_values_is_refused(tmp_path):
    """A list inside an object array needs no global, but it is not a value of the layout."""
    import pickle

    raw = pickle.dumps(np.array([["a", ["nested"]]], dtype=object), protocol=2)
    path = hostile.pickle_bytes(tmp_path / "dataset.h5", raw)
    with pytest.raises(ModelFormatError, match="holds a list"):
        read_meta(path)


def test_the_table_format_is_named(tmp_path):
    path = tmp_path / "table.h5"
    meta, _ = hostile.meta_frame()
    meta.to_hdf(path, key="meta", mode="w", format="table")
    with h5py.File(path, "a") as h5:
        h5.create_dataset("filters", data=np.zeros((114, 9), np.float32))
    with pytest.raises(ModelFormatError, match="\"table\" format"):
        list(iter_hdf5_models(path))


def test_export_round_trips_through_the_safe_reader(tmp_path):
    path = tmp_path / "dataset.h5"
    _, filters = hostile.write_layout(path)
    store = init_store(tmp_path / "zoo", dtype="float32")
    import_hdf5(store, path)
    out = tmp_path / "out.h5"
    assert export_hdf5(store, out) == len(filters)
    assert_same_frame(read_meta(out), pd.read_hdf(out, "meta"))
    again = init_store(tmp_path / "again", dtype="float32")
    import_hdf5(again, out)
    cols = ["model", "task", "visual_category", "training_dataset", "n_filters"]
    assert again.models()[cols].equals(store.models()[cols])
    assert np.array_equal(np.concatenate(list(again.iter_filters("3x3", scaled=False))), filters)


# ------------------------------------------------------------------------------------- item 4: the layout
def test_a_huge_never_written_filters_dataset_is_refused_at_once(cli, tmp_path):  # noqa: F811 - the fixture
    path = hostile.declared_huge(tmp_path / "dataset.h5")  # (2**31, 9) declared, 0:54999999 referenced
    assert path.stat().st_size < 4 * 2**20  # PyTables gives each pickled block a 1 MiB chunk
    run = cli("import-hdf5", "--init", str(tmp_path / "store"), str(path))
    assert_refused(run, path, "never written")


@pytest.mark.parametrize("lie", sorted(hostile.FILTERS_LIES))
def test_filters_of_the_wrong_shape_or_type_are_the_files_fault(capsys, tmp_path, lie):
    path = hostile.filters_dataset(tmp_path / "dataset.h5", hostile.FILTERS_LIES[lie])
    words = {"width0": ["width 0"], "huge-chunk": ["one chunk", "would need"], "short": ["outside"],
             "group": ["not a dataset"]}.get(lie, ["/filters is a", "array of floats"])
    refused(capsys, tmp_path, path, *words)


@pytest.mark.parametrize("ids, words", [
    (["0:11", "5:51", "52:75", "76:83", "84:113"], "share filters"),
    (["0:11", "12:51", "52:75", "76:83", "84:114"], "outside the 114 filters"),
    (["0:11", "51:12", "52:75", "76:83", "84:113"], "ends before it starts"),
    (["0:11", "12:51", "52:75", "76:83", "84-113"], "is not 'start:end'"),
    (["0:11", "12:51", "52:75", "76:83", "0:99999999999999999999"], "is not 'start:end'"),
])
def test_lying_filter_ids_are_refused(capsys, tmp_path, ids, words):
    hostile.write_layout(tmp_path / "dataset.h5")
    path = hostile.replace_ids(tmp_path / "dataset.h5", ids)
    refused(capsys, tmp_path, path, words)


def test_huge_declared_meta_datasets_are_refused_before_reading(capsys, tmp_path):
    path = hostile.meta_dataset_declared_huge(tmp_path / "dataset.h5")
    refused(capsys, tmp_path, path, "/meta/axis1_label0", "would need")


def test_compressed_filters_cannot_declare_more_than_the_file_holds(capsys, tmp_path):
    """Chunks of zeros compress 1000-fold: the rows referenced in all are bounded by the file's size."""
    rows, chunk = 2**24, 2**20
    path = tmp_path / "dataset.h5"
    hostile.write_layout(path, models=[(0, "zeros", "Classification", [(0, 1)])])
    hostile.replace_ids(path, [f"0:{rows - 1}"])
    zeros = zlib.compress(bytes(chunk * 9 * 4), 9)
    with h5py.File(path, "a") as h5:
        del h5["filters"]
        ds = h5.create_dataset("filters", shape=(rows, 9), dtype="f4", chunks=(chunk, 9), compression="gzip")
        for start in range(0, rows, chunk):
            ds.id.write_direct_chunk((start, 0), zeros)
    assert path.stat().st_size < 4 * 2**20  # PyTables gives each pickled block a 1 MiB chunk
    refused(capsys, tmp_path, path, "more than a file of", "--max-memory")


def test_each_model_is_bounded_by_max_memory(capsys, tmp_path):
    path = tmp_path / "dataset.h5"
    hostile.write_layout(path, models=[(0, "small", "Classification", [(0, 10)]),
                                       (1, "large", "Classification", [(0, 5000), (1, 5000)])])
    store = tmp_path / "store"
    code, _, err = run_cli(capsys, "import-hdf5", "--init", "--max-memory", "300K", store, path)
    assert code == 1 and "model 1" in err and "would need" in err and "360,000 bytes" in err, err
    assert str(path) in err and "--max-memory" in err
    assert [m for m in init_store(store, exist_ok=True).models()["model"]] == ["small"]  # model 0 went in first
    code, out, err = run_cli(capsys, "import-hdf5", "--max-memory", "400K", store, path)
    assert code == 0, err
    assert "imported 1 model(s), 10,000 filters (1 already in the store)" in out


def test_a_reimport_prepares_and_writes_nothing(tmp_path):
    path = hostile.many_models(tmp_path / "dataset.h5", 20)
    store = init_store(tmp_path / "zoo")
    first = import_hdf5(store, path)
    assert not any(r.skipped for r in first)
    before = snapshot(store.root)
    again = import_hdf5(store, path)
    assert all(r.skipped for r in again)
    assert [(r.model_id, r.sha256, r.n_filters) for r in again] == [(r.model_id, r.sha256, r.n_filters) for r in first]
    assert snapshot(store.root) == before


def test_the_same_model_twice_in_one_file_is_stored_once(tmp_path):
    path = tmp_path / "dataset.h5"
    hostile.write_layout(path, models=[(0, "a", "Classification", [(0, 3)]), (1, "b", "Classification", [(0, 3)])])
    with h5py.File(path, "a") as h5:
        h5["filters"][3:6] = h5["filters"][0:3]  # model 1's weights = model 0's
        h5["meta/axis1_label3"][:] = [0, 0]  # and its one layer has the same layer_id: the same record
    results = import_hdf5(init_store(tmp_path / "zoo"), path)
    assert [r.skipped for r in results] == [False, True]
    assert results[1].model_id == results[0].model_id


# ------------------------------------------------------------------------- item 12: impossible kernels
def test_a_zero_size_onnx_kernel_is_the_files_fault(capsys, tmp_path):
    import fuzzing

    path = fuzzing.onnx_conv(tmp_path / "zero.onnx", dims=(4, 3, 0, 0))
    for command in (["check", path], ["ingest", "--init", tmp_path / "store", path]):
        code, _, err = run_cli(capsys, *command)
        assert code == 1, err
        assert str(path) in err and "kernel size (0, 0)" in err and "corrupt" in err


@pytest.mark.parametrize("change, words", [
    (lambda meta: meta.assign(model_id=5), "clash with its columns"),
    (lambda meta: meta.drop(columns="filter_ids"), "lacks filter_ids"),
    (lambda meta: meta.reset_index("model_id").assign(model_id=[0, np.nan, 0, 3, 3])
     .set_index("model_id", append=True), "without model_id"),
    (lambda meta: meta.rename(columns={"Task": "!!!"}), "no letters or digits"),
    (lambda meta: meta.assign(op_set=[11.0, 11.0, 11.0, 1e300, 11.0]), "op_set"),
])
def test_a_meta_frame_that_lies_about_its_columns_is_the_files_fault(tmp_path, change, words):
    import warnings

    meta, n = hostile.meta_frame()
    path = tmp_path / "dataset.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        change(meta).to_hdf(path, key="meta", mode="w")
    with h5py.File(path, "a") as h5:
        h5.create_dataset("filters", data=np.ones((n, 9), np.float32))
    with pytest.raises(ModelFormatError, match="dataset.h5") as info:
        list(iter_hdf5_models(path))
    assert words in str(info.value)
