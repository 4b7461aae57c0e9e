"""The pruning headroom of the zoo report (`filterdb report`, its --json): kept per model by `filterdb ingest`, the
numbers equal ``prune_plan(file, free_only=True)`` computed independently on the same file, and on a net whose
near-zero and duplicate channels are planted they equal the shares counted by hand. A store whose models were
written without it says "not measured" (never 0) and how to fill it; a re-ingest fills it."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from helpers import planted_prune_weights, run_cli

from filterdb import read_model
from filterdb.analysis import study
from filterdb.ingest import ingest
from filterdb.prune import prune_plan
from filterdb.store import open_store

# known.safetensors, by hand (as tests/test_report_card_prune.py): conv1 16 channels of 3x3x3, 4 all zero; conv2 32
# channels of 16x3x3, 8 exact copies of 8 others; conv3 8 channels of 32x3x3 reads conv2 and is the model output.
KNOWN_TOTAL = 16 * 27 + 32 * 16 * 9 + 8 * 32 * 9
KNOWN_FREE = 4 * 27 + 32 * 4 * 9  # the zero channels, and conv2's inputs that read them
KNOWN_MORE = 8 * 12 * 9 + 8 * 8 * 9  # the copies (their inputs from the zero channels already counted), conv3's inputs


def _wide() -> dict[str, np.ndarray]:
    """A second planted net, by hand too: a 5x5 stem of 24 channels with 6 zero ones, a 1x1 layer of 40 whose
    channels 30..39 are negated copies (cosine -1: not redundant after a ReLU) and 20..29 scaled copies (cosine
    1: redundant), read by a 3x3 head of 10."""
    rng = np.random.default_rng(11)
    stem = rng.standard_normal((24, 3, 5, 5)).astype(np.float32)
    stem[[0, 5, 7, 11, 17, 23]] = 0.0
    mid = rng.standard_normal((40, 24, 1, 1)).astype(np.float32)
    mid[20:30] = 3.0 * mid[:10]
    mid[30:40] = -mid[10:20]
    head = rng.standard_normal((10, 40, 3, 3)).astype(np.float32)
    # named in file order: a state_dict keeps no graph, so the plan's chain is the order of the names
    return {"l1_stem.weight": stem, "l2_mid.weight": mid, "l3_head.weight": head}


WIDE_TOTAL = 24 * 75 + 40 * 24 + 10 * 40 * 9
WIDE_FREE = 6 * 75 + 40 * 6  # 6 zero stem channels, and the mid layer's 6 inputs that read them
WIDE_MORE = 10 * (24 - 6) + 10 * 10 * 9  # 10 scaled copies in mid (18 inputs left each), the head's 10 inputs


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, corpus_path) -> tuple[Path, dict[str, Path]]:
    """A store of three real model files ingested by `filterdb ingest` with a manifest: two planted nets
    (safetensors) and a trained one from the corpus (MTCNN O-Net, a PyTorch file)."""
    from safetensors.numpy import save_file

    folder = tmp_path_factory.mktemp("headroom")
    files = {"known": folder / "known.safetensors", "wide": folder / "wide.safetensors", "onet": corpus_path("onet.pt")}
    save_file(planted_prune_weights(), str(files["known"]))
    save_file(_wide(), str(files["wide"]))
    manifest = folder / "zoo.csv"
    manifest.write_text("file,Name,Task,Visual Category,Training-Dataset\n"
                        f"{files['known']},known,planted,none,none\n{files['wide']},wide,planted,none,none\n"
                        f"{files['onet']},onet,Face Detection,faces,unknown\n", encoding="utf-8")
    store = folder / "zoo.fdb"
    report = ingest(store, manifest=manifest, create=True, jobs=1, trust_pickle=False)
    assert len(report.ingested) == 3 and not report.failed
    return store, files


def _study_json(capsys, store: Path) -> dict:
    """`filterdb report STORE --json`'s prune section (a tiny zoo may leave a drift axis with one group: exit 1,
    the JSON printed all the same; the prune section must not be what failed)."""
    code, out, err = run_cli(capsys, "report", store, "--json", "--no-progress", "--by", "task")
    study_json = json.loads(out)
    assert code == 0 or set(study_json["errors"]) <= {"drift:task", "pca", "histograms"}, err
    assert "prune" not in study_json["errors"]
    return study_json


def _json(capsys, store: Path) -> dict:
    return _study_json(capsys, store)["prune"]


def test_report_json_equals_the_plan_of_each_file_and_the_hand_counts(zoo, capsys) -> None:
    store, files = zoo
    whole = _study_json(capsys, store)
    prune = whole["prune"]
    by_name = {m["model"]: m for m in prune["models"]}
    assert set(by_name) == {"known", "wide", "onet"} and prune["not_measured"] == [] and prune["note"] is None
    for name, path in files.items():
        plan = prune_plan(read_model(path), free_only=True)  # the plan `filterdb prune FILE --free-only` computes
        m = by_name[name]
        assert m["status"] == "measured"
        assert (m["params_total"], m["free_params"], m["redundant_params"]) == (
            plan.params_total, plan.free_params, plan.redundant_params)
        assert m["free_share"] == pytest.approx(plan.free_params / plan.params_total)
    assert (by_name["known"]["params_total"], by_name["known"]["free_params"], by_name["known"]["redundant_params"]) \
        == (KNOWN_TOTAL, KNOWN_FREE, KNOWN_MORE)
    assert (by_name["wide"]["params_total"], by_name["wide"]["free_params"], by_name["wide"]["redundant_params"]) \
        == (WIDE_TOTAL, WIDE_FREE, WIDE_MORE)
    # the zoo and each task: sums of the models' weights, not means of their shares
    total = prune["total"]
    assert total["n_models"] == 3 and total["params_total"] == sum(m["params_total"] for m in by_name.values())
    assert total["free_share"] == pytest.approx(sum(m["free_params"] for m in by_name.values()) / total["params_total"])
    assert prune["by"] == "task"
    groups = {g["group"]: g for g in prune["groups"]}
    assert groups["planted"]["params_total"] == KNOWN_TOTAL + WIDE_TOTAL
    assert groups["planted"]["free_params"] == KNOWN_FREE + WIDE_FREE
    assert groups["planted"]["redundant_params"] == KNOWN_MORE + WIDE_MORE
    assert groups["Face Detection"]["free_params"] == by_name["onet"]["free_params"]
    # the finding quotes the zoo's shares and the group with the largest no-risk share
    finding = next(f for f in whole["findings"] if f["kind"] == "prune_headroom")
    assert finding["numbers"]["free_share"] == pytest.approx(total["free_share"])
    assert finding["numbers"]["redundant_share"] == pytest.approx(total["redundant_share"])
    best = max(groups.values(), key=lambda g: g["free_share"])
    assert finding["numbers"]["group"] == best["group"] == prune["groups"][0]["group"]
    assert f"{100 * total['free_share']:.1f} % of the conv parameters of 3 measured models" in finding["text"]


def _prune_part(page: str) -> str:
    return page[page.index('id="prune"'):page.index('id="models"')]


def _headline(section: str) -> str:
    text = html.unescape(re.sub(r"<[^>]+>", " ", section))
    return re.search(r"([\d.]+ % of conv parameters removable at no measured risk; [\d.]+ % more at low diversity)",
                     text).group(1)


def _rows(section: str) -> dict[str, list[str]]:
    """First cell -> the row's cells, for every table row of the section (groups and models)."""
    rows = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", section, flags=re.S):
        cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        if cells:
            rows[cells[0]] = cells
    return rows


def test_html_report_shows_the_zoo_headline_and_each_models_shares(zoo, tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib", reason="the report needs the 'plot' extra (matplotlib)")
    store, files = zoo
    out = tmp_path / "report.html"
    code, _, err = run_cli(capsys, "report", store, "-o", out, "--no-progress", "--no-figure-cache",
                           "--by", "task")
    assert code == 0, err
    section = _prune_part(out.read_text(encoding="utf-8"))
    head, rows = _headline(section), _rows(section)
    plans = {name: prune_plan(read_model(path), free_only=True) for name, path in files.items()}
    total = sum(p.params_total for p in plans.values())
    free = sum(p.free_params for p in plans.values())
    more = sum(p.redundant_params for p in plans.values())
    assert head == (f"{100 * free / total:.1f} % of conv parameters removable at no measured risk; "
                    f"{100 * more / total:.1f} % more at low diversity")
    for name, plan in plans.items():
        cells = rows[name]
        assert cells[1] == "measured"
        assert cells[3] == f"{100 * plan.free_params / plan.params_total:.1f} %"
        assert cells[4] == f"{100 * plan.redundant_params / plan.params_total:.1f} %"
    assert rows["known"][3] == f"{100 * KNOWN_FREE / KNOWN_TOTAL:.1f} %" == "17.2 %"
    assert rows["planted"][4] == f"{100 * (KNOWN_FREE + WIDE_FREE) / (KNOWN_TOTAL + WIDE_TOTAL):.1f} %"


def test_a_store_written_without_headroom_says_not_measured_and_a_reingest_fills_it(zoo, tmp_path, capsys) -> None:
    _, files = zoo
    root = tmp_path / "old.fdb"
    from filterdb.store import init_store

    old = init_store(root)
    # the store's own write, without the ingest layer: what a store ingested before the headroom was kept holds
    old.ingest(read_model(files["known"]), {"Name": "known", "Task": "planted"}, metrics=None)
    old.ingest(read_model(files["wide"]), {"Name": "wide", "Task": "planted"}, metrics=None)
    old.close()
    before = _json(capsys, root)
    assert [m["status"] for m in before["models"]] == ["not measured", "not measured"]
    assert all(m[k] is None for m in before["models"] for k in ("free_share", "free_params", "params_total"))
    assert before["total"] == {"group": "all models", "n_models": 0, "n_not_measured": 2, "params_total": 0,
                               "free_params": 0, "redundant_params": 0, "free_share": None, "redundant_share": None}
    assert "not measured" in before["note"] and f"filterdb ingest {root}" in before["note"]
    # the note's command: the models stay, each file is read once, the numbers appear
    code, out, err = run_cli(capsys, "ingest", root, files["known"], files["wide"])
    assert code == 0, err
    assert "pruning headroom added to 2 model(s)" in out
    after = {m["model"]: m for m in _json(capsys, root)["models"]}
    assert (after["known"]["free_params"], after["known"]["redundant_params"]) == (KNOWN_FREE, KNOWN_MORE)
    assert (after["wide"]["free_params"], after["wide"]["redundant_params"]) == (WIDE_FREE, WIDE_MORE)
    assert len(open_store(root).models()) == 2


def test_the_html_page_of_an_old_store_says_not_measured(tmp_path, zoo) -> None:
    pytest.importorskip("matplotlib", reason="the report needs the 'plot' extra (matplotlib)")
    from filterdb.report import build_zoo_report
    from filterdb.store import init_store

    _, files = zoo
    old = init_store(tmp_path / "old.fdb")
    old.ingest(read_model(files["known"]), {"Name": "known"}, metrics=None)
    page = build_zoo_report(study(old), old, figure_cache=None, workers=0, model_sections=False).html
    section = _prune_part(page)
    assert "No model of the store has measured pruning headroom." in section
    assert "removable at no measured risk;" not in section  # no share is shown for a store without numbers
    assert _rows(section)["known"][1:5] == ["not measured", "–", "not measured", "not measured"]


def test_hdf5_imports_say_why_they_have_no_headroom(tmp_path) -> None:
    from filterdb.ingest import import_hdf5
    from filterdb.store import export_hdf5, init_store
    from filterdb.testing import build_synthetic_zoo

    zoo = build_synthetic_zoo(tmp_path / "zoo.fdb")
    export_hdf5(zoo, tmp_path / "dataset.h5")
    again = init_store(tmp_path / "again.fdb")
    import_hdf5(again, tmp_path / "dataset.h5")
    prune = study(again).prune
    assert prune is not None and prune.models
    assert {m.status for m in prune.models} == {"not measurable"}
    assert all("HDF5 layout keeps no output channels" in (m.note or "") for m in prune.models)
    assert prune.total.n_models == 0 and prune.note is None  # nothing a re-ingest could fill



def test_headroom_counts_the_duplicates_at_the_threshold_as_the_plan_does() -> None:
    """Ingest screens each layer's cosines in float32 and scores exactly only near the threshold: pairs planted at
    cosines just under and just over 0.95 (and a negated copy) are counted as the plan counts them, by hand."""
    from filterdb import ModelInfo, ModelRecord
    from filterdb.prune import headroom
    from filterdb.readers import make_layer

    rng = np.random.default_rng(3)
    basis, _ = np.linalg.qr(rng.standard_normal((64, 64)))
    w1 = basis[:, :12].T.copy()  # 12 orthonormal channels of 4x4x4 = 64 values
    pairs = {0: 0.93, 1: 0.9495, 2: 0.9505, 3: 0.97, 4: -0.99}  # channel 12 + k repeats channel k at this cosine
    extra = []
    for k, c in pairs.items():
        extra.append(c * basis[:, k] + np.sqrt(1 - c * c) * basis[:, 40 + k])  # 40+: orthogonal to all channels
    w1 = np.vstack([w1, np.array(extra)]).reshape(17, 4, 4, 4) * 0.5
    w2 = rng.standard_normal((6, 17, 3, 3))
    record = ModelRecord(ModelInfo(source="threshold", format="onnx"),
                         (make_layer("c1", "Conv", w1.astype(np.float32)), make_layer("c2", "Conv", w2.astype(np.float32))))
    h = headroom(record)
    plan = prune_plan(record, free_only=True)
    assert (h.params_total, h.free_params, h.redundant_params) == (plan.params_total, plan.free_params,
                                                                    plan.redundant_params)
    # by hand: the pairs at 0.9505 and 0.97 are duplicates (2 channels of 64 weights, and 2 inputs of c2's 6
    # channels of 3x3); 0.93, 0.9495 and the negated copy are not; no channel is zero
    assert h.n_duplicate == (2, 0) and h.n_zero == (0, 0)
    assert (h.free_params, h.redundant_params) == (0, 2 * 64 + 2 * 6 * 9)
