"""The study of a store as one result: :func:`study` returns a :class:`Study`.

What ``filterdb report`` shows and ``filterdb report --json`` prints: the PCA basis, the drift matrix of every
grouping axis with each group's noise floor and a ranking of the groups by how far they sit from the
others, the ranking of the axes, the 2-D density of the first two coefficients, the degenerated layers
(catalog rows only), the model families (candidates from the fingerprints stored at ingest, the closest
pairs decided by the full comparison of their weights; see :class:`Families`), the caveats, and the *findings*: short
statements, each with the numbers behind it and the rule that produced it (docs/report.md, "Findings").

The filters are read twice whatever the number of axes (docs/analysis.md, "The study"): a basis pass
(the Gram matrix of all selected filters, and of the largest groups of the first axis), then one pass that
fills every axis's histograms, the split halves of the noise floors, the coefficient extremes of the
published signs and the density at once. A section that fails is recorded in :attr:`Study.errors` with its
message; the other sections are still computed.

Every result type here is frozen and turns into plain JSON with ``to_dict`` / ``to_json``; the renderers
(``filterdb.report``, the CLI) read these fields and compute nothing.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..selection import Selection
from ._settings import Execution
from .pca import PCAResult

if TYPE_CHECKING:
    from ._density import DensityResult
    from ._headroom import PruneHeadroom
    from .degeneration import DegenerationResult
    from .drift import DriftResult

__all__ = ["AxisRank", "AxisStudy", "DominantModel", "Families", "Finding", "GroupShift", "Study",
           "StudySettings", "study"]

Progress = Callable[[str], None]  # called with one short line per phase ("basis pass: 12.3 s")


def _num(value: float | None) -> float | None:
    """A float for JSON: NaN and infinities become None (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class StudySettings:
    """The choices of a study that change its numbers (every default is the report's).

    Raises :class:`filterdb.errors.UsageError` on construction for a value out of range.
    """

    per_model: bool = False
    """Each model of a group counts equally (the mean of its models' distributions) instead of each filter."""
    bins: int = 70
    """Histogram bins per coefficient (the paper's 70), over the analytic bound ±(√d + ‖μ‖) of the basis."""
    min_filters: int = 100
    """Groups with fewer filters are left out of an axis's matrix (named in :attr:`AxisStudy.left_out`)."""
    density_bins: int = 160
    """Bins per axis of the 2-D density of coefficients 1 and 2."""
    pca_groups: int = 3
    """Besides the basis of all filters, the bases of this many largest groups of the first axis that is not
    depth (fitted in the same basis pass)."""
    sign_rule: str = "u-based"
    """Component signs: "u-based" (the published eigen-images; from the extremes of the second pass) or
    "loadings"."""
    lineage: bool = True
    """Build the model families: candidates from the fingerprints stored at ingest (never computed here), at most
    ``filterdb.lineage.MAX_CONFIRMED`` candidate pairs decided by the full comparison of their weights."""
    dominant_share: float = 0.5
    """A model holding more than this share of a group's filters is a caveat of that group."""

    def __post_init__(self) -> None:
        from ..errors import UsageError

        for name, low in (("bins", 1), ("min_filters", 0), ("density_bins", 2), ("pca_groups", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.bins > 10_000 or self.density_bins > 4_000:
            raise UsageError(f"bins must be at most 10,000 and density_bins at most 4,000, got {self.bins} and "
                             f"{self.density_bins}")
        if self.sign_rule not in ("u-based", "loadings"):
            from ._settings import one_of

            raise UsageError(one_of("sign_rule", self.sign_rule, ("u-based", "loadings")))
        if not 0 < self.dominant_share < 1:
            raise UsageError(f"dominant_share must be between 0 and 1, got {self.dominant_share!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"per_model": self.per_model, "bins": self.bins, "min_filters": self.min_filters,
                "density_bins": self.density_bins, "pca_groups": self.pca_groups, "sign_rule": self.sign_rule,
                "lineage": self.lineage, "dominant_share": self.dominant_share}


@dataclass(frozen=True)
class GroupShift:
    """One group of an axis, ranked by how far it sits from the other groups."""

    group: str
    """The group's value of the axis (depth deciles as "(0.1, 0.2]")."""
    n_models: int
    """Models with filters in the group."""
    n_filters: int
    """Filters of the group in the matrix."""
    mean_drift: float
    """Mean drift to the other groups of the axis: the mean of the group's row of the matrix, diagonal left
    out. The ranking key (largest first)."""
    floor: float | None
    """The group's noise floor: the drift between two fixed random halves of its layers (a hash of the
    layer id). None when it cannot be estimated (see :attr:`floor_note`)."""
    floor_note: str | None
    """Why there is no floor ("one model: ...", "too few layers: ..."), else None."""
    beyond_floor: bool | None
    """``mean_drift > floor``; None when the floor cannot be estimated (never counted as beyond noise)."""

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "n_models": int(self.n_models), "n_filters": int(self.n_filters),
                "mean_drift": _num(self.mean_drift), "floor": _num(self.floor), "floor_note": self.floor_note,
                "beyond_floor": self.beyond_floor}


@dataclass(frozen=True)
class DominantModel:
    """A model that holds more than ``StudySettings.dominant_share`` of a group's filters."""

    group: str
    """The group it dominates."""
    model: str
    """The model's name."""
    share: float
    """Its share of the group's filters, 0–1."""

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "model": self.model, "share": float(self.share)}


@dataclass(frozen=True, eq=False)
class AxisStudy:
    """One grouping axis: its drift matrix, its groups' noise floors and ranking, and its caveats."""

    axis: str
    """The axis as given: a ``layers`` column, "depth" or an SQL expression."""
    drift: DriftResult
    """The drift matrix over the study's one basis (``drift.groups`` in display order: ascending mean drift,
    depth deciles in their own order)."""
    floors: Mapping[str, float | None]
    """Group -> noise floor (None: cannot be estimated), for every group of the matrix."""
    ranking: tuple[GroupShift, ...]
    """Every group of the matrix, most shifted first (largest mean drift to the others)."""
    beyond_pairs: tuple[tuple[str, str, float], ...]
    """The pairs (a, b, drift) whose drift exceeds the larger of their two floors, largest first; a pair with a
    group of unknown floor is never in it."""
    n_pairs: int
    """Pairs of groups in the matrix (the upper triangle)."""
    left_out: tuple[str, ...]
    """Sentences naming the groups not in the matrix and why (unknown values, too few filters)."""
    dominant: tuple[DominantModel, ...]
    """Groups one model dominates (its share of the group's filters)."""
    notes: tuple[str, ...] = ()
    """Other notes of the analysis (layers without a value, NaN weights left out)."""

    @property
    def groups(self) -> tuple[str, ...]:
        return self.drift.groups

    @property
    def median(self) -> float:
        """The median pairwise drift (upper triangle)."""
        upper = self.drift.upper_triangle()
        return float(_median(upper)) if len(upper) else float("nan")

    def to_dict(self) -> dict[str, Any]:
        d = self.drift
        return {"axis": self.axis, "groups": list(d.groups), "matrix": d.matrix.tolist(),
                "sizes": d.sizes, "summary": _clean(d.summary()),
                "floors": {g: _num(v) for g, v in self.floors.items()},
                "ranking": [r.to_dict() for r in self.ranking],
                "beyond_pairs": [[a, b, float(v)] for a, b, v in self.beyond_pairs], "n_pairs": self.n_pairs,
                "left_out": list(self.left_out), "dominant": [m.to_dict() for m in self.dominant],
                "notes": list(self.notes), "model_weighting": d.model_weighting, "bins": d.bins,
                "range": list(d.range)}


@dataclass(frozen=True)
class AxisRank:
    """One axis in the ranking of axes: which grouping explains most of how filters differ."""

    axis: str
    """The axis."""
    median: float
    """Median pairwise drift (upper triangle): the ranking key, largest first."""
    mean: float
    """Mean pairwise drift."""
    n_groups: int
    """Groups in its matrix."""
    beyond_share: float | None
    """Share of the pairs whose drift exceeds the larger of their floors (None: no pair has two floors)."""

    def to_dict(self) -> dict[str, Any]:
        return {"axis": self.axis, "median": _num(self.median), "mean": _num(self.mean),
                "n_groups": int(self.n_groups), "beyond_share": _num(self.beyond_share)}


@dataclass(frozen=True)
class Families:
    """Models that share weights (docs/lineage.md, docs/report.md "Model families: how they are computed").

    Computed by :func:`filterdb.lineage.lineage_of`: every pair of models with a stored fingerprint is scored
    with the fingerprint score (each layer's sketch of its largest kernels matched by content to the best layer
    of the other model, whatever the layer order; identical layer hashes or file sha256: an identical copy,
    score 1). Pairs whose larger score is at least ``filterdb.lineage.FP_DERIVED`` are candidates; up to
    ``filterdb.lineage.MAX_CONFIRMED`` of them (first a spanning tree of the candidates, then the others by
    score) are decided by :func:`filterdb.lineage.relate` on the weights of those two models read back from
    the store, so their relation, score and parent are the ones ``filterdb compare`` gives. A family is a
    connected component of the related pairs (membership is transitive); ``edges`` are each family's spanning
    tree, each with its relation, score, parent and ``confidence`` (0.5 and no parent: direction unknown).
    Candidates past the bound stay in their family with the fingerprint's score and no direction.
    """

    families: tuple[tuple[str, ...], ...]
    """Families of two or more related models (model names)."""
    edges: tuple[Mapping[str, Any], ...]
    """Parent -> child edges: ``parent``, ``child``, ``relation``, ``score``, ``confidence``."""
    n_models: int
    """Models with a stored fingerprint (the ones compared)."""
    missing: tuple[str, ...] = ()
    """Models without a stored fingerprint (left out of the comparison)."""
    note: str | None = None
    """How to add the missing fingerprints, when some are missing; else None."""

    def to_dict(self) -> dict[str, Any]:
        return {"families": [list(f) for f in self.families], "edges": [dict(e) for e in self.edges],
                "n_models": self.n_models, "missing": list(self.missing), "note": self.note}


@dataclass(frozen=True)
class Finding:
    """One statement of the study, with the numbers behind it (docs/report.md gives every rule)."""

    kind: str
    """The rule that produced it: "axis_ranking", "most_shifted", "no_shift", "floor_unknown",
    "dominant_model", "degeneration", "families", "largest_pair"."""
    text: str
    """One sentence for a reader."""
    numbers: Mapping[str, Any]
    """The numbers the sentence states (plain JSON values)."""
    axis: str | None = None
    """The axis it concerns, if one."""
    group: str | None = None
    """The group it concerns, if one."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "numbers": _clean(dict(self.numbers)), "axis": self.axis,
                "group": self.group}


@dataclass(frozen=True, eq=False)
class Study:
    """The study of a store: every number the report shows, and the findings (see the module docstring)."""

    store: str
    """The store's folder."""
    selection: Selection
    """What was read (kernel shape, ``where``/``params``); ``by`` is None: the axes are :attr:`axes`."""
    settings: StudySettings
    """The settings the numbers depend on."""
    n_filters: int
    """Filters of the selection (the basis was fitted on them)."""
    pca: PCAResult | None
    """The basis of all selected filters (signs by ``settings.sign_rule``); None when the section failed."""
    group_pcas: Mapping[str, PCAResult]
    """The bases of the largest groups of the first axis that is not depth (signs aligned to :attr:`pca`)."""
    axes: tuple[AxisStudy, ...]
    """One per grouping axis that has at least two groups, in the order asked for."""
    axis_ranking: tuple[AxisRank, ...]
    """The axes by median pairwise drift, largest first."""
    density: DensityResult | None
    """The 2-D density of coefficients 1 and 2 (0-based ``i = 0, j = 1``); None when the section failed."""
    degeneration: DegenerationResult | None
    """Degenerated layers per model, group (first axis) and depth decile, from catalog rows."""
    families: Families | None
    """Model families from stored fingerprints; None when ``settings.lineage`` is off or the section failed."""
    caveats: tuple[str, ...]
    """What limits the conclusions: groups left out, dominant models, groups without a floor."""
    findings: tuple[Finding, ...]
    """The statements, most important first (axis ranking, then per axis)."""
    errors: Mapping[str, str] = field(default_factory=dict)
    """Section -> the message of the error that stopped it ("pca", "drift:task", "density", "degeneration",
    "families", "prune"). Empty when everything was computed."""
    timings: Mapping[str, float] = field(default_factory=dict)
    """Phase -> seconds ("plan", "basis pass", "histogram pass", "degeneration", "families", "prune headroom",
    "findings")."""
    notes: tuple[str, ...] = ()
    """Notes of the plan (layers left out for NaN weights or a missing value)."""
    prune: PruneHeadroom | None = None
    """Pruning headroom per model, summed over the zoo and per group of the first axis, as ``filterdb ingest`` kept
    it (no weights read); None when the section failed."""

    @property
    def ok(self) -> bool:
        """True when no section failed."""
        return not self.errors

    def axis(self, name: str) -> AxisStudy:
        """The study of one axis (KeyError naming the axes there are)."""
        for a in self.axes:
            if a.axis == name:
                return a
        raise KeyError(f"no axis {name!r} in this study; axes: {[a.axis for a in self.axes]}")

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON values (NaN as null)."""
        return {
            "format": "filterdb-study-1", "store": self.store, "selection": self.selection.to_dict(),
            "settings": self.settings.to_dict(), "n_filters": int(self.n_filters),
            "pca": None if self.pca is None else self.pca.to_dict(),
            "group_pcas": {g: p.to_dict() for g, p in self.group_pcas.items()},
            "axes": [a.to_dict() for a in self.axes], "axis_ranking": [r.to_dict() for r in self.axis_ranking],
            "density": None if self.density is None else self.density.to_dict(),
            "degeneration": None if self.degeneration is None else self.degeneration.to_dict(),
            "families": None if self.families is None else self.families.to_dict(),
            "caveats": list(self.caveats), "findings": [f.to_dict() for f in self.findings],
            "errors": dict(self.errors), "timings": {k: round(float(v), 3) for k, v in self.timings.items()},
            "notes": list(self.notes), "prune": None if self.prune is None else _clean(self.prune.to_dict()),
        }

    def to_json(self, path: str | os.PathLike[str] | None = None, *, indent: int | None = 1) -> str:
        """The JSON text of :meth:`to_dict`; written atomically to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            from .._atomic import atomic_write_text

            atomic_write_text(path, text)
        return text


def _median(values: Any) -> float:
    import numpy as np

    return float(np.median(values))


def _clean(value: Any) -> Any:
    """NaN / inf -> None, numpy scalars -> Python, recursively (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not hasattr(value, "__len__"):
        value = value.item()
    if isinstance(value, float):
        return _num(value)
    return value


def study(store: Any, selection: Selection | None = None, by: Sequence[str] | None = None,
          settings: StudySettings | None = None, execution: Execution | None = None, *,
          progress: Progress | None = None) -> Study:
    """The study of ``store`` (a :class:`~filterdb.store.Store` or a path): see the module docstring.

    Parameters
    ----------
    selection : Selection, optional
        Kernel shape, ``where`` and ``params`` of the filters studied (default: every 3x3 filter). Its ``by``
        and ``groups`` must be None: the axes are ``by``.
    by : sequence of str, optional
        The grouping axes (``layers`` columns, "depth" or SQL expressions); default :func:`default_axes`:
        the taxonomy columns with at least two groups (at most three), then depth.
    settings : StudySettings, optional
    execution : Execution, optional
        Engine, kernel, threads and task size, as for every analysis.
    progress : callable, optional
        Called with one short line per phase when it ends (the library never prints).

    Returns
    -------
    Study
        Sections that failed are named in ``Study.errors``; a mistake in the call itself (an unknown
        column, a bad setting) raises :class:`filterdb.errors.UsageError` before any work.
    """
    from ._study_run import run_study

    return run_study(store, selection, by, settings or StudySettings(), execution or Execution(),
                     progress or (lambda text: None))


def default_axes(store: Any, selection: Selection | None = None) -> list[str]:
    """The axes a study uses when none are given: the taxonomy columns whose selected filters fall into at
    least two groups (task, visual_category, training_dataset, architecture, format; at most three), then
    ``depth``."""
    from ._study_run import default_axes as _default

    return _default(store, selection or Selection())
