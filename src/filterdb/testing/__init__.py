"""Ground truth for tests, benchmarks and plugins: synthetic models and zoos, and a trained model family.

For your own tests (a reader, a plugin, an analysis) without model files::

    from filterdb.testing import build_synthetic_zoo, synthetic_record
    zoo = build_synthetic_zoo(tmp_path / "zoo.fdb")          # 7 models, 3 visual categories, read-only
    record = synthetic_record(1)                              # one small ModelRecord

- :func:`synthetic_record`, :func:`category_record`, :func:`figure_record`: deterministic in-memory models.
- :func:`build_synthetic_zoo` (:data:`ZOO_MODELS`), :func:`build_figure_zoo`: stores of them, ingested with
  :func:`filterdb.ingest_record`. :func:`write_manifest`: manifest rows as CSV, YAML or JSON.
- :func:`make_family` / :func:`load_family` / :func:`family_pairs`: small CNNs trained on sklearn's digits with
  their copies and children, the ground truth of :mod:`filterdb.lineage` (need torch and scikit-learn).
"""

from __future__ import annotations

from ._family import CHILDREN, FAMILY_VERSION, FamilyMember, FamilyPair, family_pairs, load_family, make_family
from ._zoo import (CATEGORY_SHIFTS, FIGURE_TASKS, ZOO_MODELS, build_figure_zoo, build_synthetic_zoo, category_record,
                   figure_record, synthetic_record, write_manifest)

__all__ = ["CATEGORY_SHIFTS", "CHILDREN", "FAMILY_VERSION", "FIGURE_TASKS", "FamilyMember", "FamilyPair",
           "ZOO_MODELS", "build_figure_zoo", "build_synthetic_zoo", "category_record", "family_pairs",
           "figure_record", "load_family", "make_family", "synthetic_record", "write_manifest"]
