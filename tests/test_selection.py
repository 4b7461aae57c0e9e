"""The frozen Selection / Execution / DriftSettings objects, and the shared CLI selection options."""

from __future__ import annotations

import dataclasses

import click
import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.decomposition import PCA

from filterdb.analysis import (
    DriftSettings,
    Execution,
    Selection,
    degeneration,
    drift,
    fit_pca,
    run_drift,
)
from filterdb.cli._options import execution_options, parse_params, selection_options
from filterdb.errors import UsageError
from filterdb.testing import ZOO_MODELS, category_record

@pytest.fixture()
def zoo(synthetic_zoo):
    """The session's synthetic zoo (filterdb.testing.ZOO_MODELS: 4 natural, 2 medical, 1 plants), read-only."""
    return synthetic_zoo


# -- validation: a UsageError naming the parameter and what it allows ------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"shape": "3by3"}, "shape must look like '3x3'"),
    ({"shape": 9}, "shape must look like '3x3'"),
    ({"where": 1}, "where must be an SQL predicate"),
    ({"by": "  "}, "by must be a column of the layers view, 'depth' or an SQL expression"),
    ({"where": "task = ?", "params": "Classification"}, "params must be a list of values"),
    ({"params": [1]}, "params [1] given without a where predicate"),
    ({"groups": ["a"]}, "groups needs by"),
    ({"by": "task", "groups": "a"}, "groups must be a list of group names"),
])
def test_selection_rejects(kwargs, message):
    with pytest.raises(UsageError) as e:
        Selection(**kwargs)
    assert message in str(e.value)


def test_selection_is_a_frozen_normalised_value():
    sel = Selection(where=" task = ? ", params=["Classification", 3], by="task", groups=["a", 2])
    assert sel.params == ("Classification", 3) and sel.groups == ("a", "2") and sel.where == "task = ?"
    assert sel == Selection(where="task = ?", params=("Classification", 3), by="task", groups=("a", "2"))
    assert hash(sel) == hash(sel.replace())
    with pytest.raises(dataclasses.FrozenInstanceError):
        sel.shape = "5x5"  # type: ignore[misc]
    assert Selection(where="").where is None  # an empty predicate selects everything, as before
    assert Selection("5x5").d == 25 and Selection("1x7").d == 7
    with pytest.raises(UsageError, match="needs a kernel shape"):
        _ = Selection(shape=None).d
    assert sel.to_dict() == {"shape": "3x3", "where": "task = ?", "params": ["Classification", 3], "by": "task",
                             "groups": ["a", "2"]}
    with pytest.raises(UsageError, match="shape must look like"):
        sel.replace(shape="3*3")


@pytest.mark.parametrize("kwargs, message", [
    ({"kernel": "numbaa"}, "kernel must be 'auto', 'numba' or 'numpy', got 'numbaa' (did you mean 'numba'?)"),
    ({"kernel": "gpu"}, "kernel must be 'auto', 'numba' or 'numpy', got 'gpu'"),
    ({"threads": 0}, "threads must be an integer >= 1 or None, got 0"),
    ({"threads": True}, "threads must be an integer >= 1"),
    ({"task_rows": 0}, "task_rows must be an integer >= 1"),
    ({"task_rows": 2.5}, "task_rows must be an integer >= 1"),
    ({"task_rows": None}, "task_rows must be an integer >= 1"),
])
def test_execution_rejects(kwargs, message):
    with pytest.raises(UsageError) as e:
        Execution(**kwargs)
    assert message in str(e.value)


def test_execution_builds_its_engine():
    exe = Execution(kernel="numpy", threads=2, task_rows=1000)
    assert exe.make_engine().describe() == "local (2 threads)"
    assert exe.kernel_name() == "numpy"
    assert exe.replace(threads=1).make_engine().describe() == "local (1 thread)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        exe.kernel = "numba"  # type: ignore[misc]


@pytest.mark.parametrize("field, value, message", [
    ("order", "size2", "order must be 'mean', 'name', 'size' or 'none', got 'size2' (did you mean 'size'?)"),
    ("weights", "eta", "weights must be 'explained' or 'uniform', got 'eta'"),
    ("fit_on", "all", "fit_on must be 'groups' or 'selection', got 'all'"),
    ("empty_bins", "zero", "empty_bins must be 'density' or 'count', got 'zero'"),
    ("sign_rule", "u_based", "sign_rule must be 'loadings' or 'u-based', got 'u_based'"),
    ("min_filters", -1, "min_filters must be an integer >= 0, got -1"),
    ("bins", 0, "bins must be an integer from 1 to 10,000, got 0"),
    ("range", (3, -3), "range must have lo < hi"),
    ("preset", "papper", "unknown preset 'papper'; did you mean 'paper'?"),
])
def test_drift_settings_reject(field, value, message):
    with pytest.raises(UsageError) as e:
        DriftSettings(**{field: value}).resolved()
    assert message in str(e.value)


def test_drift_settings_apply_the_preset_and_keep_explicit_values():
    paper = DriftSettings(preset="paper", bins=50).resolved()
    assert (paper.range, paper.weights, paper.fit_on, paper.sign_rule, paper.min_filters, paper.bins) == (
        "minmax", "explained", "selection", "u-based", 0, 50)
    plain = DriftSettings().resolved()
    assert (plain.range, plain.min_filters, plain.min_models, plain.model_weighting) == ("bound", 100, 1, False)


def test_objects_and_loose_keywords_do_not_mix(zoo):
    with pytest.raises(UsageError, match="either selection= or shape="):
        fit_pca(zoo, "5x5", selection=Selection())
    with pytest.raises(UsageError, match="either execution= or kernel="):
        fit_pca(zoo, kernel="numpy", execution=Execution())
    with pytest.raises(UsageError, match="either settings= or the drift keywords"):
        drift(zoo, selection=Selection(by="visual_category"), bins=10, settings=DriftSettings())
    with pytest.raises(UsageError, match="drift needs a grouping axis"):
        run_drift(zoo, Selection())


# -- the objects select what they say -----------------------------------------------------------------------
def _stored_3x3(records) -> np.ndarray:
    """The 3x3 filters of ``records`` as a float16 store keeps them (docs/store.md: each layer divided by its max
    |w|, rounded to float16), each filter then divided by its max |value| (zero filters stay zero)."""
    rows = []
    for record in records:
        for layer in record.layers:
            if layer.weight.shape[2:] == (3, 3):
                w = np.asarray(layer.weight, dtype=np.float32).reshape(-1, 9)
                rows.append((w / np.float32(np.abs(w).max())).astype(np.float16))
    x = np.concatenate(rows).astype(np.float64)
    peak = np.abs(x).max(axis=1, keepdims=True)
    return np.divide(x, peak, out=np.zeros_like(x), where=peak > 0)


def test_pca_of_a_selection_equals_sklearn_on_those_weights(zoo):
    medical = [category_record(seed, category) for seed, category, _ in ZOO_MODELS if category == "medical"]
    x = _stored_3x3(medical)
    ref = PCA().fit(x)
    sel = Selection(where="visual_category = ?", params=["medical"], by="visual_category")  # by is ignored
    for exe in (Execution(kernel="numpy", threads=1), Execution(threads=2, task_rows=100)):
        basis = fit_pca(zoo, selection=sel, execution=exe)
        assert basis.n_filters == len(x) and basis.n_models == len(medical)
        np.testing.assert_allclose(basis.explained_variance_ratio, ref.explained_variance_ratio_, atol=1e-6)
        np.testing.assert_allclose(basis.components, ref.components_, atol=1e-5)
        assert basis.selection["where"] == "visual_category = ?" and basis.selection["params"] == ["medical"]


def test_run_drift_equals_the_keyword_api(zoo):
    kwargs = {"min_filters": 0, "range": "minmax", "model_weighting": True}
    old = drift(zoo, "visual_category", kernel="numpy", task_rows=100, **kwargs)
    new = run_drift(zoo, Selection(by="visual_category"), DriftSettings(**kwargs),
                    Execution(kernel="numpy", task_rows=100))
    assert new.groups == old.groups and new.range == old.range
    np.testing.assert_array_equal(new.matrix, old.matrix)
    only = run_drift(zoo, Selection(by="visual_category", groups=["plants", "natural"]),
                     DriftSettings(min_filters=0, order="none"))
    assert only.groups == ("plants", "natural")
    assert set(only.sizes["n_models"]) == {1, 4}  # plants: 1 model, natural: 4


def test_degeneration_takes_a_selection(zoo):
    sel = Selection(shape=None, where="visual_category <> ?", params=["plants"], by="visual_category")
    a = degeneration(zoo, selection=sel)
    b = degeneration(zoo, "visual_category", "visual_category <> ?", ["plants"])
    assert a.overall == b.overall and list(a.per_group["visual_category"]) == ["natural", "medical"]
    not_plants = [m for m in ZOO_MODELS if m[1] != "plants"]
    assert a.overall["n_layers"] == len(not_plants) * 4  # 3 conv layers and a 1x1 head each (shape=None)


# -- the shared CLI options -----------------------------------------------------------------------------------
def test_parse_params_converts_like_the_store_commands():
    assert parse_params(("3", "2.5", "x", "1e3", "")) == [3, 2.5, "x", 1000.0, ""]
    assert parse_params(()) is None


def test_selection_options_hand_one_selection_to_the_command():
    seen = {}

    @click.command()
    @selection_options(by="optional")
    @execution_options
    @click.option("--flag", is_flag=True, help="Something else.")
    def cmd(selection: Selection, execution: Execution, flag: bool) -> None:
        """A command."""
        seen.update(selection=selection, execution=execution, flag=flag)

    runner = CliRunner()
    out = runner.invoke(cmd, ["--where", "model_id = ? AND task = ?", "-p", "3", "-p", "Detection", "--by", "task",
                              "--threads", "2", "--kernel", "numpy", "--flag"])
    assert out.exit_code == 0, out.output
    assert seen["selection"] == Selection("3x3", "model_id = ? AND task = ?", (3, "Detection"), "task")
    assert seen["execution"] == Execution(kernel="numpy", threads=2)
    assert seen["flag"] is True
    assert cmd.__doc__ == "A command." and cmd.name == "cmd"
    help_text = runner.invoke(cmd, ["--help"]).output
    for option in ("--shape", "--where", "-p, --param", "--by", "--scheduler", "--threads", "--kernel",
                   "--task-rows", "--flag"):
        assert option in help_text
    out = runner.invoke(cmd, ["--shape", "3by3"])
    assert isinstance(out.exception, UsageError) and "shape must look like '3x3'" in str(out.exception)


def test_selection_options_can_leave_out_shape_and_by():
    @click.command()
    @selection_options(shape=False)
    def cmd(selection: Selection) -> None:
        click.echo(repr(selection))

    out = CliRunner().invoke(cmd, ["--where", "n_filters > ?", "-p", "10"])
    assert out.output.strip() == repr(Selection(None, "n_filters > ?", (10,)))
    help_text = CliRunner().invoke(cmd, ["--help"]).output
    assert "--shape" not in help_text and "--by" not in help_text


def test_analyze_usage_errors_from_the_selection(zoo, capsys):
    from filterdb.cli import main

    for args, message in ((["pca", "-p", "3"], "params [3] given without a where predicate"),
                          (["drift", "--by", "task", "--shape", "3by3"], "shape must look like '3x3'")):
        with pytest.raises(SystemExit) as e:
            main(["analyze", str(zoo.root), *args])
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and err.count("\n") == 1, err


def test_parameter_checks_of_the_analysis_layer_are_usage_errors(zoo):
    from filterdb.analysis._density import coefficient_density
    from filterdb.analysis.kernels import resolve_kernel
    from filterdb.engine import LocalEngine

    with pytest.raises(UsageError, match="i and j must be different components, got 0 twice"):
        coefficient_density(zoo, 0, 0)
    with pytest.raises(UsageError, match="j must be a component index in \\[0, 8\\], got 9"):
        coefficient_density(zoo, 0, 9)
    with pytest.raises(UsageError, match="n_threads must be an integer >= 1, got 0"):
        LocalEngine(0)
    with pytest.raises(UsageError, match="kernel must be 'auto', 'numba' or 'numpy', got 'fast'"):
        resolve_kernel("fast")
