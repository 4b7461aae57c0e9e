"""Reports of filterdb results as self-contained HTML pages (figures from :mod:`filterdb.plotting`).

Needs the 'plot' extra (matplotlib) for the figures: ``pip install 'filterdb[plot]'``.

Examples
--------
>>> from filterdb import read_model                      # doctest: +SKIP
>>> from filterdb.check import check_model               # doctest: +SKIP
>>> from filterdb.report import write_model_card         # doctest: +SKIP
>>> record = read_model("model.onnx")                    # doctest: +SKIP
>>> write_model_card("card.html", record, check_model(record))  # doctest: +SKIP

The zoo report lays out a study: ``write_zoo_report("report.html", filterdb.analysis.study("zoo.fdb"))``.
"""

from ._html import Html, Page, Rendered, esc, write_html
from ._lineage import lineage_html
from ._model_card import model_card_html, write_model_card
from ._zoo_report import ZooReport, build_zoo_report, write_zoo_report

__all__ = ["Html", "Page", "Rendered", "ZooReport", "build_zoo_report", "esc", "lineage_html", "model_card_html",
           "write_html", "write_model_card", "write_zoo_report"]
