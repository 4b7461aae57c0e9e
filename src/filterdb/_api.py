"""``filterdb.check``: the Python twin of ``filterdb check`` (read a model, then judge its layers).

It lives at the root because it joins two layers that do not import each other: the readers and sources
(:func:`filterdb.read_model`) and the health check (:func:`filterdb.check.check_model`, which takes a record).
"""

from __future__ import annotations

from typing import Any

from ._read import read_model
from .check import ModelReport, Thresholds, check_model
from .types import ModelRecord

__all__ = ["check"]


def check(model: Any, thresholds: Thresholds = Thresholds(), *, trust_pickle: bool = False,
          format: str | None = None, max_memory: int | str | None = None) -> ModelReport:
    """The health report of a model, as ``filterdb check MODEL`` prints it.

    Parameters
    ----------
    model : str, os.PathLike, ModelRecord, torch.nn.Module or keras.Model
        A model file, a source name (``"pypi:nudenet==3.4.2#nudenet/320n.onnx"``), a record that
        :func:`filterdb.read_model` returned, or a live model.
    thresholds : Thresholds, optional
        Cut-offs of the verdicts (``--sparse-threshold`` ... on the command line).
    trust_pickle, format, max_memory
        As for :func:`filterdb.read_model` (``--trust-pickle``, ``--format``, ``--max-memory``).

    Returns
    -------
    ModelReport
        ``to_frame()`` (one row per layer), ``summary``, ``to_dict()`` / ``to_json()`` (``--json``),
        ``to_csv()`` (``--csv``).

    Examples
    --------
    >>> report = check("model.onnx")  # doctest: +SKIP
    >>> report.to_frame()[["name", "variance_entropy_norm", "verdicts"]]  # doctest: +SKIP
    """
    record = model if isinstance(model, ModelRecord) else read_model(
        model, trust_pickle=trust_pickle, format=format, max_memory=max_memory)
    return check_model(record, thresholds)
