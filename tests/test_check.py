"""Degeneration verdicts and the model report (docs/reference.md §7)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import filterdb
from filterdb.check import VERDICT_KINDS, ModelReport, Thresholds, Verdict, check_model, failing
from filterdb.readers import registered_readers
from filterdb.readers import make_layer
from filterdb.types import ModelInfo, ModelRecord

REQUIRED_LAYER_KEYS = {
    "name", "kind", "shape", "groups", "kernel", "n_filters", "conv_depth", "conv_depth_norm", "sparsity",
    "variance_entropy", "variance_entropy_norm", "variance_entropy_clean", "orthogonality", "verdicts",
    "op_type", "depth_source", "storage_dtype", "variance_entropy_clean_norm", "norm_l1", "norm_l2",
    "norm_l1_std", "norm_l2_std", "neighbour_corr", "n_nonfinite",
}


def record_of(*layers, **info) -> ModelRecord:
    defaults = dict(source="test", format="onnx", producer="pytorch", producer_version="2.1", opset=17,
                    op_counts={"Conv": len(layers), "Relu": 2}, n_parameters=sum(l.weight.size for l in layers))
    defaults.update(info)
    return ModelRecord(ModelInfo(**defaults), tuple(layers))


def random_layer(name, shape, seed=0):
    return make_layer(name, "Conv", np.random.default_rng(seed).standard_normal(shape))


def low_rank_layer(name, shape, rank=2, seed=0):
    rng = np.random.default_rng(seed)
    n = shape[0] * shape[1]
    d = int(np.prod(shape[2:]))
    x = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d))
    return make_layer(name, "Conv", x.reshape(shape))


def sparse_layer(name, shape, share, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(np.float32)
    flat = w.reshape(-1, int(np.prod(shape[2:])))
    flat[: int(round(share * len(flat)))] = 0
    return make_layer(name, "Conv", flat.reshape(shape))


# ------------------------------------------------------------------------------------------- thresholds
def test_threshold_defaults():
    t = Thresholds()
    assert (t.sparsity_eps, t.sparse, t.low_diversity, t.random, t.min_filters, t.entropy, t.random_corr_z) == (
        0.01, 0.5, 0.5, 1.0, 32, "all", 2.576)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sparse=0), r"Thresholds.sparse must be in \(0, 1\], got 0"),
        (dict(sparsity_eps=2.0), r"Thresholds.sparsity_eps must be in \(0, 1\], got 2.0"),
        (dict(random=float("nan")), r"Thresholds.random must be a finite number >= 0, got nan"),
        (dict(low_diversity=1.2), r"Thresholds.low_diversity \(1.2\) must be below Thresholds.random \(1.0\)"),
        (dict(min_filters=0), r"Thresholds.min_filters must be an integer >= 1, got 0"),
        (dict(entropy="raw"), r"Thresholds.entropy must be 'all' or 'clean', got 'raw'"),
    ],
)
def test_threshold_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Thresholds(**kwargs)


# --------------------------------------------------------------------------------------------- verdicts
def test_each_kind_of_verdict():
    bad = random_layer("nonfinite", (4, 4, 3, 3), seed=3).weight.copy()
    bad[0, 0, 1, 1] = np.nan
    report = check_model(record_of(
        random_layer("random", (64, 64, 3, 3)),
        low_rank_layer("redundant", (64, 32, 3, 3)),
        sparse_layer("sparse", (32, 32, 3, 3), 0.75),
        make_layer("nonfinite", "Conv", bad),
        random_layer("small_random", (4, 4, 3, 3)),  # n = 16 < min_filters: no entropy verdict
    ))
    assert report.layers["verdicts"].tolist() == [
        ["random"], ["low-diversity"], ["sparse"], ["non-finite"], []]
    random_verdict = report.verdicts[0][0]
    assert isinstance(random_verdict, Verdict)
    assert random_verdict.value == pytest.approx(report.layers.loc[0, "variance_entropy_norm"])
    assert random_verdict.threshold == 1.0 and "random" in random_verdict.message
    sparse_verdict = report.verdicts[2][0]
    assert sparse_verdict.value == pytest.approx(0.75) and sparse_verdict.threshold == 0.5
    assert "75% of the 1024 filters" in sparse_verdict.message
    assert report.verdicts[3][0].value == 1.0 and report.verdicts[3][0].threshold == 0.0
    assert report.layers.loc[4, "variance_entropy_norm"] > 1  # would be "random" with min_filters <= 16
    assert check_model(report_record := record_of(random_layer("r", (4, 4, 3, 3))),
                       Thresholds(min_filters=16)).layers.loc[0, "verdicts"] == ["random"]
    assert report_record.layers[0].n_filters == 16


def smooth_depthwise_layer(n, rho, seed=0):
    """n depthwise 3x3 filters whose adjacent taps correlate by rho (as trained filters' do), else Gaussian."""
    idx = np.arange(9).reshape(3, 3)
    cov = np.eye(9)
    for a, b in [*zip(idx[:, :-1].ravel(), idx[:, 1:].ravel()), *zip(idx[:-1].ravel(), idx[1:].ravel())]:
        cov[a, b] = cov[b, a] = rho
    x = np.random.default_rng(seed).standard_normal((n, 9)) @ np.linalg.cholesky(cov).T
    return make_layer("dw", "Conv", x.reshape(n, 1, 3, 3), groups=n)


def test_small_smooth_layer_with_random_entropy_is_not_random():
    # The case: 32 depthwise filters whose entropy reads just above 1 (inside the spread of random
    # layers at n = 32) while the taps correlate like trained ones. Entropy alone said "random".
    record = record_of(smooth_depthwise_layer(32, rho=0.2))
    row = check_model(record).layers.loc[0]
    bound = 2.576 / math.sqrt(32 * 12)  # 12 adjacent pairs in a 3x3 filter
    assert 1.0 < row["variance_entropy_norm"] < 1.03 and row["neighbour_corr"] > bound
    assert row["verdicts"] == []
    assert check_model(record, Thresholds(random_corr_z=math.inf)).layers.loc[0, "verdicts"] == ["random"]


def test_random_small_depthwise_layer_stays_random():
    report = check_model(record_of(make_layer(
        "dw", "Conv", np.random.default_rng(3).uniform(-1, 1, (32, 1, 3, 3)), groups=32)))
    assert report.layers.loc[0, "verdicts"] == ["random"]
    evidence = report.verdicts[0][0].evidence
    assert abs(evidence["neighbour_corr"]) <= evidence["neighbour_corr_bound"] == pytest.approx(2.576 / math.sqrt(384))
    assert "inside ±0.131" in report.verdicts[0][0].message


@pytest.mark.parametrize("kernel", [(3, 3), (5, 5), (1, 3)])
def test_neighbour_corr_band_holds_99_percent_of_random_layers(kernel):
    # Reference: numpy's corrcoef over the explicitly listed adjacent tap pairs of 4000 random layers
    from filterdb._thresholds import neighbour_corr_bound

    kh, kw = kernel
    idx = np.arange(kh * kw).reshape(kh, kw)
    first = np.concatenate([idx[:, :-1].ravel(), idx[:-1, :].ravel()])
    second = np.concatenate([idx[:, 1:].ravel(), idx[1:, :].ravel()])
    rng = np.random.default_rng(11)
    n = 32
    bound = neighbour_corr_bound(n, kernel, 2.576)
    inside = [abs(np.corrcoef(x[:, first].ravel(), x[:, second].ravel())[0, 1]) <= bound
              for x in rng.uniform(-1, 1, (4000, n, kh * kw))]
    assert 0.985 <= np.mean(inside) <= 0.995  # 0.99 +- 3.5 binomial standard deviations (0.0016)


def test_sparse_verdict_boundary_is_inclusive():
    at = check_model(record_of(sparse_layer("at", (8, 8, 3, 3), 0.5)))
    below = check_model(record_of(sparse_layer("below", (8, 8, 3, 3), 31 / 64)))
    assert at.layers.loc[0, "sparsity"] == 0.5 and at.layers.loc[0, "verdicts"] == ["sparse"]
    assert below.layers.loc[0, "verdicts"] == []


def test_clean_entropy_variant():
    # Random filters around a common offset plus 40 % zero filters: the zeros add one dominant direction
    # (offset vs origin), so the whole layer reads low-diversity, while the clean variant sees random filters.
    rng = np.random.default_rng(0)
    w = (3.0 + rng.standard_normal((64 * 64, 9))).astype(np.float32)
    w[: int(0.4 * len(w))] = 0
    layer = make_layer("offset", "Conv", w.reshape(64, 64, 3, 3))
    assert "random" not in check_model(record_of(layer)).layers.loc[0, "verdicts"]
    assert check_model(record_of(layer), Thresholds(entropy="clean")).layers.loc[0, "verdicts"] == ["random"]


def test_one_by_one_and_tiny_layers_get_no_entropy_verdicts():
    report = check_model(record_of(
        random_layer("pw", (256, 256, 1, 1)),
        make_layer("one", "Conv", np.ones((1, 1, 3, 3))),
    ))
    assert report.layers["verdicts"].tolist() == [[], []]


# ---------------------------------------------------------------------------------------------- summary
def test_summary_counts():
    report = check_model(record_of(
        random_layer("a", (64, 64, 3, 3)),
        random_layer("b", (32, 64, 1, 1)),
        low_rank_layer("c", (64, 32, 3, 3)),
        random_layer("d", (16, 1, 5, 5)),
        random_layer("e", (8, 4, 3)),  # Conv1d
    ))
    s = report.summary
    assert s["n_conv_layers"] == 4 and s["n_layers_total"] == 5
    assert s["filters_by_shape"] == {"3x3": 4096 + 2048, "1x1": 2048, "5x5": 16}
    assert s["n_filters"] == 4096 + 2048 + 2048 + 16
    assert s["share_3x3"] == pytest.approx(6144 / 8208)
    assert s["n_degenerated"] == {"sparse": 0, "low-diversity": 1, "random": 1, "non-finite": 0, "any": 2}
    assert s["share_degenerated"]["any"] == pytest.approx(0.5)
    assert s["has_2d_filters"] is True
    assert s["format"] == "onnx" and s["opset"] == 17 and s["op_counts"] == {"Conv": 5, "Relu": 2}
    assert "1 convolution layer(s) without 2-D kernels" in s["notes"][0]
    assert s["thresholds"]["random"] == 1.0


def test_model_without_2d_filters_is_reported_not_an_error():
    report = check_model(record_of(random_layer("c1", (8, 4, 5)), random_layer("c2", (8, 8, 3))))
    s = report.summary
    assert s["has_2d_filters"] is False and s["n_conv_layers"] == 0 and s["n_layers_total"] == 2
    assert s["filters_by_shape"] == {} and s["share_3x3"] is None
    assert s["share_degenerated"]["any"] is None
    assert "none with 2-D kernels (1-D)" in s["notes"][0]
    json.dumps(report.to_dict(), allow_nan=False)


def test_model_without_convolutions():
    report = check_model(record_of())
    assert report.summary["n_layers_total"] == 0 and report.summary["notes"] == ["the model has no convolution layers"]
    assert report.to_dict()["layers"] == []


# ---------------------------------------------------------------------------------------------- outputs
def test_to_dict_is_json_safe_and_complete():
    report = check_model(record_of(
        random_layer("random", (64, 64, 3, 3)),
        make_layer("one", "Conv", np.ones((1, 1, 3, 3))),  # orthogonality undefined -> None
    ))
    d = report.to_dict()
    assert set(d) == {"model", "layers", "summary"}
    assert d["model"]["source"] == "test" and d["model"]["n_conv_layers"] == 2
    assert d["model"]["filters_by_shape"] == {"3x3": 4097}
    first, second = d["layers"]
    assert REQUIRED_LAYER_KEYS <= set(first)
    assert first["kernel"] == [3, 3] and first["shape"] == [64, 64, 3, 3]
    assert first["verdicts"][0]["kind"] == "random"
    assert set(first["verdicts"][0]) == {"kind", "value", "threshold", "margin", "spread", "borderline", "message",
                                         "evidence"}
    assert set(first["verdicts"][0]["evidence"]) == {"neighbour_corr", "neighbour_corr_bound"}
    assert second["orthogonality"] is None and second["verdicts"] == []
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["summary"]["n_degenerated"]["random"] == 1


def test_to_csv(tmp_path):
    report = check_model(record_of(random_layer("random", (64, 64, 3, 3)), random_layer("pw", (8, 8, 1, 1))))
    text = report.to_csv()
    header, first, second = text.strip().splitlines()
    assert header.startswith("name,kind,op_type,shape,groups,kernel,n_filters")
    assert header.endswith(",verdicts")
    assert first.startswith("random,conv,Conv,64x64x3x3,1,3x3,4096,") and first.endswith(",random")
    assert ",1x1," in second
    assert report.to_csv(tmp_path / "r.csv") is None
    assert (tmp_path / "r.csv").read_text(encoding="utf-8") == text


def test_failing():
    report = check_model(record_of(random_layer("r", (64, 64, 3, 3)), low_rank_layer("l", (64, 32, 3, 3))))
    assert [(n, v.kind) for n, v in failing(report, ["random"])] == [("r", "random")]
    assert [n for n, _ in failing(report, ["any"])] == ["r", "l"]
    assert failing(report, "sparse") == []
    assert failing(report, []) == []
    with pytest.raises(ValueError, match=r"kinds: unknown verdict kind 'randm'; allowed: sparse, low-diversity"):
        failing(report, ["randm"])
    assert set(VERDICT_KINDS) == {"sparse", "low-diversity", "random", "non-finite"}


def test_check_model_validates_its_inputs():
    with pytest.raises(TypeError, match=r"takes a filterdb.ModelRecord .*, got str; .* call filterdb.check\(model\)"):
        check_model("model.onnx")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="thresholds must be a filterdb.check.Thresholds, got dict"):
        check_model(record_of(), {"random": 1})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ real corpus
@pytest.mark.corpus
@pytest.mark.torch
@pytest.mark.parametrize("key", ["pnet.pt", "rnet.pt", "onet.pt"])
def test_trained_facenet_models_are_healthy(corpus_path, key):
    torch = pytest.importorskip("torch")
    state = torch.load(corpus_path(key), weights_only=True)
    layers = [make_layer(name, "Conv2d", t.numpy()) for name, t in state.items() if t.ndim == 4]
    report = check_model(record_of(*layers, format="pytorch"))
    assert failing(report, ["any"]) == []
    assert report.summary["has_2d_filters"]


@pytest.mark.corpus
@pytest.mark.slow
def test_nudenet_320n_whole_check(corpus_path, corpus_entry):
    if "onnx" not in registered_readers():
        pytest.skip("the ONNX reader is not registered yet")
    record = filterdb.read_model(corpus_path("320n.onnx"))
    report = check_model(record)
    assert isinstance(report, ModelReport)
    assert report.summary["filters_by_shape"]["3x3"] == corpus_entry("320n.onnx").n_3x3
    assert report.summary["n_degenerated"]["random"] == 0
    assert report.summary["n_degenerated"]["non-finite"] == 0
    assert not math.isnan(report.layers["variance_entropy"].max())


def test_parameter_mistakes_are_usage_errors():
    # the CLI maps UsageError to exit code 2; it is still a ValueError for Python callers
    from filterdb.errors import UsageError
    from filterdb.metrics import sparsity, variance_entropy

    with pytest.raises(UsageError, match="Thresholds.random_corr_z must be a number > 0"):
        Thresholds(random_corr_z=0)
    with pytest.raises(UsageError, match="eps must be in"):
        sparsity(np.ones((4, 9)), eps=2.0)
    with pytest.raises(UsageError, match="2-D"):
        variance_entropy(np.ones(9))
    with pytest.raises(UsageError, match="unknown verdict kind 'sparsee'"):
        failing(check_model(record_of()), ["sparsee"])
