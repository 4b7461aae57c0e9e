"""The prune plan in the model report card (`filterdb check --html`): the headline's two shares and every
per-layer ratio in the page equal the plan's, and the shares equal the ones counted by hand on a net whose
near-zero and duplicate channels are known."""

from __future__ import annotations

import html
import re

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the report card needs the 'plot' extra (matplotlib)")

from helpers import planted_prune_weights, run_cli

from filterdb import read_model
from filterdb.check import check_model
from filterdb.prune import prune_plan
from filterdb.readers import make_layer
from filterdb.report import model_card_html
from filterdb.types import ModelInfo, ModelRecord


def _record() -> ModelRecord:
    layers = tuple(make_layer(name.removesuffix(".weight"), "Conv", w) for name, w in planted_prune_weights().items())
    return ModelRecord(ModelInfo(source="known", format="onnx"), layers)


def _card_numbers(page: str) -> tuple[float, float, dict[str, float]]:
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    free, more = re.search(r"([\d.]+) % of conv parameters removable at no measured risk; ([\d.]+) % more at low "
                           r"diversity", text).groups()
    table = page[page.index('id="prune"'):]
    ratios = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, flags=re.S)[1:]:
        cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        if len(cells) == 8:
            ratios[cells[0]] = float(cells[4].rstrip(" %")) / 100
    return float(free), float(more), ratios


def test_the_cards_headline_and_ratios_are_the_plans() -> None:
    record = _record()
    plan = prune_plan(record, target=0.5)
    free, more, ratios = _card_numbers(model_card_html(record, check_model(record), plan=plan))
    # by hand: the 4 zero channels of conv1 are 4·27 weights there and 32·4·9 inputs of conv2; the 8 copies in
    # conv2 are 8·(16 − 4)·9 weights there (its inputs from the zero channels already gone) and 8·8·9 inputs of conv3
    total = 16 * 27 + 32 * 16 * 9 + 8 * 32 * 9
    assert plan.params_total == total
    assert round(100 * plan.free_params / total, 1) == free == round(100 * (4 * 27 + 32 * 4 * 9) / total, 1)
    assert round(100 * plan.redundant_params / total, 1) == more == round(100 * (8 * 12 * 9 + 8 * 8 * 9) / total, 1)
    assert ratios == pytest.approx({lp.name: round(lp.ratio, 3) for lp in plan.layers}, abs=5e-4)
    assert ratios["conv3"] == 0.0  # the last conv is a model output: left at 0, with its reason in the table


def test_check_html_shows_the_plan_of_the_same_file(tmp_path, capsys) -> None:
    from safetensors.numpy import save_file

    path = tmp_path / "known.safetensors"
    save_file(planted_prune_weights(), str(path))
    card = tmp_path / "card.html"
    code, _, err = run_cli(capsys, "check", path, "--html", card)
    assert code in (0, 1), err
    free, more, ratios = _card_numbers(card.read_text(encoding="utf-8"))
    plan = prune_plan(read_model(path), target=0.5)  # the plan `filterdb prune FILE` prints
    assert (free, more) == (round(100 * plan.free_params / plan.params_total, 1),
                            round(100 * plan.redundant_params / plan.params_total, 1))
    assert ratios == pytest.approx({lp.name: round(lp.ratio, 3) for lp in plan.layers}, abs=5e-4)


def test_a_card_without_a_plan_has_no_prune_section() -> None:
    record = _record()
    page = model_card_html(record, check_model(record))
    assert 'id="prune"' not in page and "removable at no measured risk" not in page
    with pytest.raises(TypeError, match="PrunePlan"):
        model_card_html(record, check_model(record), plan={"not": "a plan"})  # type: ignore[arg-type]
