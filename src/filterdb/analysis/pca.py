"""The PCA basis of scaled filters ("eigen-images", docs/reference.md §4), streamed from the Gram matrix.

For N filters of d values, the d×d Gram matrix XᵀX and the column sums are all a PCA needs: the
covariance is (XᵀX − N μμᵀ)/(N − 1) and its ``eigh`` gives the components. That is exact (no
approximation as in incremental or randomized PCA), mergeable across batches, threads and machines,
and needs O(d²) memory whatever N is.

Sign rules (``sign_rule``): "loadings" (default; scikit-learn ≥ 1.5) flips each component so that its entry
of largest absolute value is positive (the first such entry on ties): it depends on the basis alone.
"u-based" (scikit-learn 0.24.1, which the authors ran: the published eigen-images) flips each component so
that the coefficient of largest absolute value over all fitted filters is positive; it needs one more pass
(the coefficients' min / max) and can change when a single extreme filter is added.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .._kernel import kernel_key
from ..errors import UsageError
from ._selection import AnalysisError, Plan, plan_for
from ._settings import DEFAULT_TASK_ROWS, Execution, Selection, execution_of, one_of, selection_of
from .kernels import PassSpec, resolve_kernel, run_rows

__all__ = ["PCAResult", "StreamingPCA", "fit_pca", "pca_from_moments", "flip_signs", "flip_signs_u_based",
           "scale_filters", "SIGN_RULES"]

SIGN_RULES = ("loadings", "u-based")


def check_sign_rule(sign_rule: str) -> str:
    if sign_rule not in SIGN_RULES:
        raise UsageError(one_of("sign_rule", sign_rule, SIGN_RULES))
    return sign_rule


def scale_filters(x: np.ndarray) -> np.ndarray:
    """Each filter divided by its max |value| (docs/reference.md §3); all-zero filters stay zero. float64 copy."""
    x = np.asarray(x, dtype=np.float64)
    peak = np.abs(x).max(axis=1, keepdims=True)
    return np.divide(x, peak, out=np.zeros_like(x), where=peak > 0)


def flip_signs(components: np.ndarray) -> np.ndarray:
    """Flip each row so that its largest-|value| entry is positive (scikit-learn's rule)."""
    components = np.array(components, dtype=np.float64)
    idx = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(len(components)), idx])
    signs[signs == 0] = 1.0
    return components * signs[:, None]


def flip_signs_u_based(components: np.ndarray, cmin: np.ndarray, cmax: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn 0.24.1's rule from the coefficients' extremes: flip component k when its most negative
    coefficient is larger in magnitude than its most positive one (a tie keeps the sign).

    Returns the flipped (components, cmin, cmax): a flipped component's extremes swap and change sign.
    """
    components = np.array(components, dtype=np.float64)
    cmin, cmax = np.asarray(cmin, np.float64), np.asarray(cmax, np.float64)
    flip = -cmin > cmax
    signs = np.where(flip, -1.0, 1.0)
    return components * signs[:, None], np.where(flip, -cmax, cmin), np.where(flip, -cmin, cmax)


def pca_from_moments(gram: np.ndarray, sums: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """(mean, components, explained_variance, explained_variance_ratio) from XᵀX, ΣX and N.

    Components are rows ordered by decreasing variance, signs by :func:`flip_signs`.
    """
    if n < 2:
        raise AnalysisError(f"a PCA needs at least 2 filters, got {n}")
    gram = np.asarray(gram, np.float64)
    mean = np.asarray(sums, np.float64) / n
    cov = (gram - n * np.outer(mean, mean)) / (n - 1)
    cov = (cov + cov.T) / 2
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    values = np.clip(values[order], 0.0, None)
    components = flip_signs(vectors[:, order].T)
    total = values.sum()
    ratio = values / total if total > 0 else np.zeros_like(values)
    return mean, components, values, ratio


@dataclass(frozen=True, eq=False)
class PCAResult:
    """A PCA basis of scaled filters, and what it was fitted on.

    Attributes
    ----------
    mean : (d,) ndarray
        μ of the scaled filters.
    components : (d, d) ndarray
        Principal axes as rows, by decreasing explained variance; signs by the documented rule.
    explained_variance : (d,) ndarray
        Variance along each axis (N − 1 denominator, as scikit-learn).
    explained_variance_ratio : (d,) ndarray
        η: the share of each axis; ``cumulative`` is its running sum.
    """

    shape: str  # kernel shape, "3x3"
    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    n_filters: int  # filters the basis was fitted on
    n_layers: int = 0
    n_models: int = 0
    selection: dict[str, Any] = field(default_factory=dict)  # where / params / store it came from
    sign_rule: str = "loadings"  # "loadings" or "u-based" (see the module docstring)

    @property
    def cumulative(self) -> np.ndarray:
        """Cumulative explained-variance ratio."""
        return np.cumsum(self.explained_variance_ratio)

    @property
    def d(self) -> int:
        return int(self.mean.shape[0])

    def transform(self, x: np.ndarray, *, scaled: bool = False) -> np.ndarray:
        """Coefficients c = (f_scaled − μ)·Vᵀ; ``scaled=True`` when ``x`` is already scaled per filter."""
        x = np.asarray(x, np.float64) if scaled else scale_filters(x)
        return (x - self.mean) @ self.components.T

    def bound(self) -> float:
        """The analytic bound of every |coefficient|: √d + ‖μ‖ (|f_scaled| ≤ 1 per value)."""
        return float(np.sqrt(self.d) + np.linalg.norm(self.mean))

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "n_filters": int(self.n_filters),
            "n_layers": int(self.n_layers),
            "n_models": int(self.n_models),
            "mean": self.mean.tolist(),
            "components": self.components.tolist(),
            "explained_variance": self.explained_variance.tolist(),
            "explained_variance_ratio": self.explained_variance_ratio.tolist(),
            "cumulative": self.cumulative.tolist(),
            "selection": self.selection,
            "sign_rule": self.sign_rule,
        }

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            _write_atomic(path, text.encode())
        return text

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save as NPZ (reload with :meth:`load`), atomically."""
        import io

        buf = io.BytesIO()
        np.savez(buf, shape=np.array(self.shape), mean=self.mean, components=self.components,
                 explained_variance=self.explained_variance, explained_variance_ratio=self.explained_variance_ratio,
                 counts=np.array([self.n_filters, self.n_layers, self.n_models], np.int64),
                 selection=np.array(json.dumps(self.selection)), sign_rule=np.array(self.sign_rule),
                 format=np.array("filterdb-pca-1"))
        _write_atomic(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PCAResult:
        """Load a basis saved by :meth:`save` (NPZ) or :meth:`to_json` (JSON)."""
        text_path = os.fspath(path)
        try:
            if text_path.endswith(".json"):
                data = json.loads(open(text_path).read())
                return cls(data["shape"], np.array(data["mean"]), np.array(data["components"]),
                           np.array(data["explained_variance"]), np.array(data["explained_variance_ratio"]),
                           int(data["n_filters"]), int(data.get("n_layers", 0)), int(data.get("n_models", 0)),
                           dict(data.get("selection", {})), str(data.get("sign_rule", "loadings")))
            with np.load(text_path, allow_pickle=False) as z:
                if "format" not in z or str(z["format"]) != "filterdb-pca-1":
                    raise AnalysisError(f"{text_path}: not a filterdb PCA basis (save one with `analyze pca --out`)")
                counts = z["counts"].tolist()
                return cls(str(z["shape"]), z["mean"], z["components"], z["explained_variance"],
                           z["explained_variance_ratio"], counts[0], counts[1], counts[2],
                           json.loads(str(z["selection"])),
                           str(z["sign_rule"]) if "sign_rule" in z else "loadings")
        except FileNotFoundError as e:
            raise AnalysisError(f"{text_path}: no such basis file") from e
        except (OSError, ValueError, KeyError) as e:
            if isinstance(e, AnalysisError):
                raise
            raise AnalysisError(f"{text_path}: unreadable basis file ({e})") from e


def _write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    from .._atomic import atomic_write_bytes

    atomic_write_bytes(path, data)


class StreamingPCA:
    """Exact PCA of (per-filter scaled) filters, fitted in batches through the Gram matrix.

    Follows scikit-learn's estimator contract: keyword-only parameters, learned attributes end in ``_``,
    ``fit`` streams through ``partial_fit``.

    Parameters
    ----------
    n_components : int, optional
        Components kept by :meth:`transform` (default: all d).
    scale : bool, default True
        Divide each filter by its max |value| before fitting (docs/reference.md §3).
    batch_size : int, default 1_048_576
        Rows per step of :meth:`fit`.
    kernel : {"auto", "numba", "numpy"}
        Compute kernel; "auto" uses numba when installed.
    sign_rule : {"loadings", "u-based"}
        "loadings" (default, scikit-learn ≥ 1.5) or "u-based" (scikit-learn 0.24.1, the published
        eigen-images). "u-based" needs every filter: :meth:`fit` makes one more pass over X; after
        :meth:`partial_fit` the components keep the "loadings" signs.

    Attributes
    ----------
    mean_, components_, explained_variance_, explained_variance_ratio_, n_samples_seen_, n_features_in_

    Examples
    --------
    >>> x = np.random.default_rng(0).standard_normal((5000, 9))
    >>> pca = StreamingPCA(kernel="numpy").fit(x)
    >>> pca.components_.shape
    (9, 9)
    """

    def __init__(self, *, n_components: int | None = None, scale: bool = True, batch_size: int = 1 << 20,
                 kernel: str = "auto", sign_rule: str = "loadings") -> None:
        self.sign_rule = sign_rule
        self.n_components = n_components
        self.scale = scale
        self.batch_size = batch_size
        self.kernel = kernel

    def _validate(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2:
            raise UsageError(f"X must be 2-D (n_filters, d), got shape {x.shape}")
        if x.dtype not in (np.float16, np.float32):
            x = x.astype(np.float32)
        if hasattr(self, "n_features_in_") and x.shape[1] != self.n_features_in_:
            raise UsageError(f"X has {x.shape[1]} features, the PCA was fitted with {self.n_features_in_}")
        if self.n_components is not None and not 1 <= self.n_components <= x.shape[1]:
            raise UsageError(f"n_components must be in [1, {x.shape[1]}], got {self.n_components}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise UsageError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        return np.ascontiguousarray(x)

    def partial_fit(self, X: Any, y: Any = None) -> StreamingPCA:
        """Add a batch of filters (n, d) and update the components."""
        x = self._validate(X)
        d = x.shape[1]
        if not hasattr(self, "gram_"):
            self.n_features_in_ = d
            self.gram_ = np.zeros((d, d))
            self.sums_ = np.zeros(d)
            self.n_samples_seen_ = 0
        self.__dict__.pop("_signs_", None)  # a new batch: "u-based" signs need a new pass over all filters
        if self.scale:
            spec = PassSpec(d=d, kernel=resolve_kernel(self.kernel))
            part = run_rows(x, np.array([0]), np.array([len(x)]), np.array([0]), spec, 1)
            self.gram_ += part.gram
            self.sums_ += part.sums
            self.n_samples_seen_ += part.n  # filters holding NaN / inf are left out (docs/reference.md §3)
        else:
            xf = x.astype(np.float64)
            xf = xf[np.isfinite(xf).all(axis=1)]
            self.gram_ += xf.T @ xf
            self.sums_ += xf.sum(axis=0)
            self.n_samples_seen_ += len(xf)
        if self.n_samples_seen_ >= 2:
            self._update()
        return self

    def fit(self, X: Any, y: Any = None) -> StreamingPCA:
        """Fit from scratch on X, streaming it in ``batch_size`` rows."""
        x = self._validate(X)
        for attr in ("gram_", "sums_", "n_samples_seen_", "n_features_in_", "_signs_"):
            self.__dict__.pop(attr, None)
        check_sign_rule(self.sign_rule)
        for a in range(0, max(len(x), 1), self.batch_size):
            self.partial_fit(x[a : a + self.batch_size])
        if self.sign_rule == "u-based" and self.n_samples_seen_ >= 2:
            self._signs_ = self._u_based_signs(x)
            self._update()
        return self

    def _u_based_signs(self, x: np.ndarray) -> np.ndarray:
        """+1 / -1 per component: the "u-based" rule from the coefficients' extremes over all of x."""
        mean, comps, _, _ = pca_from_moments(self.gram_, self.sums_, self.n_samples_seen_)
        d = len(mean)
        cmin, cmax = np.full(d, np.inf), np.full(d, -np.inf)
        for a in range(0, len(x), self.batch_size):
            rows = x[a : a + self.batch_size]
            rows = rows[np.isfinite(rows).all(axis=1)]  # the kernel's rule: rows with NaN / inf are left out
            xs = scale_filters(rows) if self.scale else rows.astype(np.float64)
            if len(xs):
                c = (xs - mean) @ comps.T
                cmin, cmax = np.minimum(cmin, c.min(axis=0)), np.maximum(cmax, c.max(axis=0))
        return np.where(-cmin > cmax, -1.0, 1.0)

    def _moments(self) -> tuple[np.ndarray, ...]:
        mean, comps, var, ratio = pca_from_moments(self.gram_, self.sums_, self.n_samples_seen_)
        signs = getattr(self, "_signs_", None)
        if signs is not None:
            comps = comps * signs[:, None]
        return mean, comps, var, ratio

    def _update(self) -> None:
        mean, comps, var, ratio = self._moments()
        k = self.n_components or len(mean)
        self.mean_ = mean
        self.components_ = comps[:k]
        self.explained_variance_ = var[:k]
        self.explained_variance_ratio_ = ratio[:k]
        self.n_components_ = k

    def transform(self, X: Any) -> np.ndarray:
        """Coefficients (n, n_components) of X (scaled per filter first when ``scale``)."""
        if not hasattr(self, "components_"):
            raise AnalysisError("this StreamingPCA is not fitted yet; call fit or partial_fit first")
        x = self._validate(X)
        xs = scale_filters(x) if self.scale else x.astype(np.float64)
        return (xs - self.mean_) @ self.components_.T

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        return self.fit(X).transform(X)

    def result(self, shape: str | None = None) -> PCAResult:
        """The fitted basis as a :class:`PCAResult` (all d components)."""
        if not hasattr(self, "gram_") or self.n_samples_seen_ < 2:
            raise AnalysisError("this StreamingPCA is not fitted yet; call fit or partial_fit first")
        mean, comps, var, ratio = self._moments()
        k = int(round(np.sqrt(len(mean))))
        rule = "u-based" if getattr(self, "_signs_", None) is not None else "loadings"
        return PCAResult(shape or kernel_key((k, k) if k * k == len(mean) else (len(mean),)), mean, comps, var, ratio,
                         int(self.n_samples_seen_), sign_rule=rule)


def fit_pca(store: Any, shape: str = "3x3", where: str | None = None, params: Sequence[Any] | None = None, *,
            engine: Any = None, kernel: str = "auto", task_rows: int = DEFAULT_TASK_ROWS,
            n_threads: int | None = None, sign_rule: str | None = None, preset: str | None = None,
            selection: Selection | None = None, execution: Execution | None = None) -> PCAResult:
    """Fit the PCA basis of the selected filters of a store (scaled per filter), in one pass.

    Parameters
    ----------
    store : Store or path
    shape : str
        Kernel shape, "3x3" by default.
    where, params : optional
        SQL predicate over the ``layers`` view with ``?`` placeholders, and its values.
    engine : None, "local", a scheduler address, a distributed.Client or an Engine
        Where to compute (default: threads on this machine).
    task_rows : int
        Rows per task (memory and scheduling granularity).
    sign_rule : "loadings" | "u-based", optional
        Component signs (module docstring); "u-based" (the published eigen-images) takes one more pass.
        Default: the preset's, else "loadings".
    preset : "paper" | "medical", optional
        The authors' settings (docs/analysis.md): both fit every selected filter with "u-based" signs.
    selection : Selection, optional
        The filters to fit, as one object; replaces ``shape``, ``where`` and ``params`` (leave those
        at their defaults). Its ``by`` is ignored: a basis is fitted on every selected filter.
    execution : Execution, optional
        Where and how to compute, as one object; replaces ``engine``, ``kernel``, ``task_rows`` and
        ``n_threads``.

    Examples
    --------
    >>> basis = fit_pca("zoo.fdb", where="task = ?", params=["Classification"])  # doctest: +SKIP
    >>> basis.explained_variance_ratio[:4]  # doctest: +SKIP
    """
    from .presets import resolve_settings

    sel = selection_of(selection, shape=shape, where=where, params=params)
    exe = execution_of(execution, engine=engine, kernel=kernel, task_rows=task_rows, threads=n_threads)
    settings = resolve_settings(preset, sign_rule=sign_rule)
    plan = plan_for(as_store(store), sel.replace(by=None, groups=None))
    basis, _ = fit_basis(plan, exe, sign_rule=settings["sign_rule"], selection=sel)
    return basis


def fit_basis(plan: Plan, execution: Execution, *, sign_rule: str = "loadings", want_extremes: bool = False,
              selection: Selection | None = None, engine: Any = None
              ) -> tuple[PCAResult, tuple[np.ndarray, np.ndarray] | None]:
    """The basis of every filter of ``plan`` (one pass) and, for "u-based" signs or when asked, the min / max of
    each coefficient over the same filters (one more pass): (basis, (cmin, cmax) or None).

    ``engine``: an Engine already made from ``execution`` (so that one analysis uses one engine).
    """
    from ._run import run_pass

    check_sign_rule(sign_rule)
    eng = engine if engine is not None else execution.make_engine()
    kernel = execution.kernel_name()
    total = run_pass(plan, PassSpec(d=plan.d, kernel=kernel), eng, execution.task_rows)
    basis = _result_from(plan, total, selection)
    if sign_rule == "loadings" and not want_extremes:
        return basis, None
    mm = run_pass(plan, PassSpec(d=plan.d, gram=False, minmax=True, components=basis.components, mean=basis.mean,
                                 kernel=kernel), eng, execution.task_rows)
    cmin, cmax = mm.cmin, mm.cmax
    if sign_rule == "u-based":
        comps, cmin, cmax = flip_signs_u_based(basis.components, cmin, cmax)
        basis = replace(basis, components=comps, sign_rule="u-based")
    return basis, (cmin, cmax)


def _result_from(plan: Plan, total: Any, selection: Selection | None) -> PCAResult:
    mean, comps, var, ratio = pca_from_moments(total.gram, total.sums, total.n)
    params = selection.bound_params if selection is not None else None
    where = selection.where if selection is not None else None
    info: dict[str, Any] = {"store": plan.root, "where": where, "params": params}
    if plan.notes or total.skipped:
        info["notes"] = list(plan.notes) + ([f"{total.skipped} filter(s) holding NaN or infinite values were "
                                             "left out"] if total.skipped else [])
    return PCAResult(plan.shape, mean, comps, var, ratio, int(total.n), int(len(plan.layers)),
                     int(plan.layers["model_id"].nunique()), info)


def as_store(store: Any) -> Any:
    """A Store (or a read-only view that reads like one) as is; a path opened read-only by the store's own rule
    (:func:`filterdb.store.as_store`)."""
    if hasattr(store, "sql") and hasattr(store, "root"):
        return store
    from ..store import as_store as store_as_store

    return store_as_store(store)


_as_store = as_store  # the name other modules import today (report, density)
