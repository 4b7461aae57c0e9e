"""What the demo's digits family must show, shared by the tests of the shipped files and of their remake."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import filterdb.demo
from filterdb.demo import DigitsModel

SHIPPED = Path(filterdb.demo.__file__).parent / "digits"  # the package's files (scripts/make_digits_family.py)


def assert_verdicts_as_designed(layers: pd.DataFrame, spec: DigitsModel) -> None:
    """Each model's one verdict on its known layers, with margin, and no verdict anywhere else."""
    found = {name: list(kinds) for name, kinds in zip(layers["name"], layers["verdicts"]) if kinds}
    assert found == {name: [spec.verdict] for name in spec.layers}, spec.name
    values = layers.set_index("name")
    for name in spec.layers:  # with margin, not at the edge of a threshold
        if spec.verdict == "sparse":
            assert values.loc[name, "sparsity"] >= 0.7
        elif spec.verdict == "low-diversity":
            assert values.loc[name, "variance_entropy_norm"] < 0.4
            assert values.loc[name, "sparsity"] == 0  # collapsed, not zeroed
    judged = values[(values["n_filters"] >= 32) & ~values.index.isin(spec.layers)]
    assert (judged["variance_entropy_norm"] < 0.99).all() and (judged["variance_entropy_norm"] > 0.6).all()
    assert (judged["sparsity"] < 0.2).all()
