"""The small shared rules have one owner each: byte sizes (filterdb._format.size / parse_size) and kernel keys
(filterdb._kernel) as the store's shard folders and the analyses' selections use them."""

from __future__ import annotations

import random

import pytest

from filterdb._format import parse_size, size
from filterdb.analysis import Selection
from filterdb.analysis._settings import SelectionError  # no public name: AnalysisError + UsageError
from filterdb.errors import UsageError
from filterdb.monitor import AlertRules, Monitor
from filterdb.store._shards import shard_path, shard_width
from filterdb.store import ShardCorruptError

KIB, MIB, GIB, TIB = 2**10, 2**20, 2**30, 2**40


@pytest.mark.parametrize(("nbytes", "text"), [
    (0, "0 B"),
    (1, "1 B"),
    (1023, "1023 B"),
    (1024, "1.0 KiB"),
    (1536, "1.5 KiB"),
    (512 * MIB, "512.0 MiB"),
    (3_600_000_000, "3.4 GiB"),  # 3.3527 GiB
    (5 * TIB, "5.0 TiB"),
    (2048 * TIB, "2048.0 TiB"),  # no unit above TiB
])
def test_size_hand_cases(nbytes: int, text: str) -> None:
    assert size(nbytes) == text


def test_size_exact_adds_the_byte_count() -> None:
    assert size(3_600_000_000, exact=True) == "3.4 GiB (3,600,000,000 bytes)"
    assert size(512 * MIB, exact=True) == "512.0 MiB (536,870,912 bytes)"
    assert size(700, exact=True) == "700 B"  # already exact


@pytest.mark.parametrize(("text", "nbytes"), [
    ("4G", 4 * GIB), ("4GB", 4 * GIB), ("4 GiB", 4 * GIB), ("4gib", 4 * GIB), ("512M", 512 * MIB),
    ("1.5 KiB", 1536), ("1.5G", 1_610_612_736), ("2000000", 2_000_000), ("10 B", 10), ("10 bytes", 10),
    ("1T", TIB), (" 3 k ", 3 * KIB), (2048, 2048),
])
def test_parse_size_hand_cases(text: str | int, nbytes: int) -> None:
    assert parse_size(text) == nbytes


@pytest.mark.parametrize("text", ["", "G", "4 PB", "four", "-1G", "1e9", "0", "0.0001K", 0, -5])
def test_parse_size_refuses_with_a_usage_error_naming_the_option(text: str | int) -> None:
    with pytest.raises(UsageError, match="--max-memory"):
        parse_size(text)


def test_parse_reads_back_what_size_prints() -> None:
    """parse_size(size(n)) == n within the rounding of size's one decimal (half a tenth of its unit)."""
    rng = random.Random(13)
    values = [1, 1023, 1024, 1025, 2047, 10**6, 10**9, 3 * TIB + 1]
    values += [int(2 ** rng.uniform(0, 45)) for _ in range(500)]
    for n in values:
        text = size(n)
        unit = next((u for name, u in (("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)) if name in text), 1)
        assert abs(parse_size(text) - n) <= 0.05 * unit + 1, (n, text)  # +1: parse_size truncates to bytes


def test_budget_message_uses_the_one_size_rule(tmp_path) -> None:
    from filterdb._budget import MemoryBudget
    from filterdb.errors import MemoryBudgetError

    budget = MemoryBudget.for_file(tmp_path / "m.onnx", max_memory="1M")
    with pytest.raises(MemoryBudgetError) as caught:
        budget.claim(3_600_000_000, "tensor 'w'")
    assert "would need 3.4 GiB (3,600,000,000 bytes)" in str(caught.value)
    assert "of 1.0 MiB (1,048,576 bytes)" in str(caught.value)


@pytest.mark.parametrize(("relpath", "width"), [
    ("shards/3x3/0123456789abcdef0123456789abcdef.arrow", 9),
    ("shards/1x7/x.arrow", 7),
    ("shards/5/x.arrow", 5),
    ("shards/3x3x3/x.arrow", 27),
    ("shards/0x3/x.arrow", None),  # a zero size is no kernel shape
    ("shards/3X3/x.arrow", None),
    ("shards/3x/x.arrow", None),
    ("shards/x.arrow", None),
    ("3x3", None),
])
def test_shard_width_reads_the_folder_name_as_a_kernel_key(relpath: str, width: int | None) -> None:
    assert shard_width(relpath) == width


def test_shard_path_accepts_only_kernel_key_folders(tmp_path) -> None:
    name = "0123456789abcdef0123456789abcdef.arrow"
    assert shard_path(tmp_path, f"shards/1x7/{name}") == tmp_path / "shards" / "1x7" / name
    for bad in (f"shards/0x3/{name}", f"shards/../{name}", f"shards/3x3/../../{name}", f"shards/03x3/{name}"):
        with pytest.raises(ShardCorruptError):
            shard_path(tmp_path, bad)


@pytest.mark.parametrize(("shape", "d"), [("3x3", 9), ("1x7", 7), ("5", 5), ("3x3x3", 27), ("11x11", 121)])
def test_selection_width(shape: str, d: int) -> None:
    assert Selection(shape=shape).d == d


@pytest.mark.parametrize("shape", ["3X3", "3 x 3", "0x3", "3x", "", 9, "3x3x"])
def test_malformed_selection_shape_is_a_selection_error(shape: object) -> None:
    with pytest.raises(SelectionError, match=r"^shape must look like '3x3'"):
        Selection(shape=shape)  # type: ignore[arg-type]  # the check under test


# -- SQL identifiers: only the store quotes them -----------------------------------------------------------------

def _record(seed: int, name: str):
    import numpy as np

    from filterdb.readers import make_layer
    from filterdb.types import ModelInfo, ModelRecord

    rng = np.random.default_rng(seed)
    layers = (make_layer("stem", "Conv", rng.normal(0, 0.1, (8, 3, 3, 3))),
              make_layer("conv1", "Conv", rng.normal(0, 0.1, (8, 8, 3, 3))))
    return ModelRecord(info=ModelInfo(source=name, format="synthetic"), layers=layers)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    from filterdb.store import init_store

    store = init_store(tmp_path_factory.mktemp("zoo") / "zoo.fdb")
    store.ingest(_record(1, "a"), {"Name": "a", "Visual Category": "faces", "Training-Dataset": "WIDER"},
                 metrics=None)
    store.ingest(_record(2, "b"), {"Name": "b", "Visual Category": "cars", "Training-Dataset": "WIDER"},
                 metrics=None)
    return store


def test_column_sql_names_view_columns_quoted(two_models) -> None:
    store = two_models
    assert "visual_category" in store.catalog.layer_columns()
    assert store.catalog.column_sql("visual_category") == '"visual_category"'
    assert store.catalog.column_sql("Visual Category") == '"visual_category"'  # as a manifest header writes it
    assert store.catalog.column_sql("Training-Dataset") == '"training_dataset"'
    for not_a_column in ("colour", "kernel = '3x3'", 'task" OR 1=1 --', "1x", ""):
        assert store.catalog.column_sql(not_a_column) is None


def test_column_sql_doubles_quotes_inside_a_name() -> None:
    from filterdb.store._catalog import column_sql  # a quote cannot reach a catalog column name otherwise

    assert column_sql(['we"ird'], 'we"ird') == '"we""ird"'


def test_grouping_by_a_manifest_header_equals_grouping_by_its_column(two_models) -> None:
    from filterdb.analysis import Selection, plan_for

    by_header = plan_for(two_models, Selection(by="Visual Category"))
    by_column = plan_for(two_models, Selection(by="visual_category"))
    assert by_header.groups == by_column.groups == ("faces", "cars")
    per_group = by_header.layers.groupby("group")["n_filters"].sum().to_dict()
    assert per_group == {0: 3 * 8 + 8 * 8, 1: 3 * 8 + 8 * 8}
    with pytest.raises(SelectionError, match="colour"):
        plan_for(two_models, Selection(by="colour"))


# -- a caller's mistake in a parameter is a UsageError (still a ValueError), as the CLI's exit code 2 expects ------

def _monitor_options(**kw):
    from filterdb.integrations._common import MonitorOptions  # what both framework callbacks validate with

    return MonitorOptions(**kw)


def _graph_depth(levels):
    import numpy as np

    from filterdb.depth import with_graph_depth
    from filterdb.readers import make_layer

    return with_graph_depth([make_layer("c", "Conv", np.ones((2, 1, 3, 3)))], levels)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: Monitor(object(), every=0), r"Monitor every must be an integer >= 1, got 0"),
    (lambda: Monitor(object(), max_overhead=2.0), r"max_overhead must be in \(0, 1\]"),
    (lambda: Monitor(object(), on_alert="halt"), r"on_alert must be 'warn' or 'stop'"),
    (lambda: AlertRules(sparsity_jump=0.0), r"AlertRules.sparsity_jump must be in"),
    (lambda: AlertRules(verdicts=("spares",)), r"AlertRules.verdicts must be a tuple"),
    (lambda: _monitor_options(every=0), r"FilterMonitor every must be an integer >= 1 or 'epoch', got 0"),
    (lambda: _graph_depth([0, 1]), r"with_graph_depth got 2 levels for 1 layers"),
])
def test_parameter_mistakes_raise_usage_error(call, message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        call()
    assert isinstance(caught.value, ValueError)  # callers that caught ValueError still do


def test_graph_depth_with_matching_levels_still_works() -> None:
    (layer,) = _graph_depth([0])
    assert layer.conv_depth == 0 and layer.depth_source == "graph"
