"""Named sets of analysis settings: the authors' CNN Filter DB notebook ("paper") and the medical follow-up.

A preset fills in every setting the caller leaves at ``None``; a setting given explicitly always wins. What
each setting means: docs/analysis.md; the formulas: docs/reference.md §3–§5.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULTS", "PRESETS", "resolve_settings"]

# filterdb's own defaults (no preset)
DEFAULTS: dict[str, Any] = {
    "bins": 70,
    "range": "bound",  # ±(√d + ‖μ‖): holds every coefficient, no extra pass
    "weights": "explained",
    "model_weighting": False,
    "min_filters": 100,
    "min_models": 1,
    "fit_on": "groups",  # basis and range from the filters of the groups kept
    "sign_rule": "loadings",
    "empty_bins": "density",
}

PRESETS: dict[str, dict[str, Any]] = {
    # CNN-Filter-DB main.ipynb: PCA and global min/max over every filter, pandas groupby of the labelled ones
    "paper": {
        "bins": 70,
        "range": "minmax",
        "weights": "explained",
        "model_weighting": False,
        "min_filters": 0,
        "min_models": 0,
        "fit_on": "selection",
        "sign_rule": "u-based",
        "empty_bins": "density",
    },
    # neurips22w_medical_conv_filters: a fixed range, uniform weights, a basis computed beforehand (--basis)
    "medical": {
        "bins": 70,
        "range": (-3.0, 3.0),
        "weights": "uniform",
        "model_weighting": False,
        "min_filters": 0,
        "min_models": 0,
        "fit_on": "selection",
        "sign_rule": "u-based",
        "empty_bins": "density",
    },
}


def resolve_settings(preset: str | None = None, **given: Any) -> dict[str, Any]:
    """DEFAULTS, overridden by the preset, overridden by every ``given`` value that is not None."""
    settings = dict(DEFAULTS)
    if preset is not None:
        if preset not in PRESETS:
            from ..errors import UsageError, suggest

            raise UsageError(suggest(str(preset), PRESETS, "preset"))
        settings.update(PRESETS[preset])
    settings.update({k: v for k, v in given.items() if v is not None})
    return settings
