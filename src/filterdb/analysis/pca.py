"""The PCA basis of scaled filters ("eigen-images", REFERENCE §4), streamed from the Gram matrix.

For N filters of d values, the d×d Gram matrix XᵀX and the column sums are all a PCA needs: the
covariance is (XᵀX − N μμᵀ)/(N − 1) and its ``eigh`` gives the components. That is exact (no
approximation as in incremental or randomized PCA), mergeable across batches, threads and machines,
and needs O(d²) memory whatever N is.

Sign rule (the same as scikit-learn's PCA since 1.5): each component is flipped so that its entry of
largest absolute value is positive (the first such entry on ties).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._selection import AnalysisError, make_plan
from .kernels import PassSpec, resolve_kernel, run_rows

__all__ = ["PCAResult", "StreamingPCA", "fit_pca", "pca_from_moments", "flip_signs", "scale_filters"]


def scale_filters(x: np.ndarray) -> np.ndarray:
    """Each filter divided by its max |value| (REFERENCE §3); all-zero filters stay zero. float64 copy."""
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
                 selection=np.array(json.dumps(self.selection)), format=np.array("filterdb-pca-1"))
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
                           dict(data.get("selection", {})))
            with np.load(text_path, allow_pickle=False) as z:
                if "format" not in z or str(z["format"]) != "filterdb-pca-1":
                    raise AnalysisError(f"{text_path}: not a filterdb PCA basis (save one with `analyze pca --out`)")
                counts = z["counts"].tolist()
                return cls(str(z["shape"]), z["mean"], z["components"], z["explained_variance"],
                           z["explained_variance_ratio"], counts[0], counts[1], counts[2],
                           json.loads(str(z["selection"])))
        except FileNotFoundError as e:
            raise AnalysisError(f"{text_path}: no such basis file") from e
        except (OSError, ValueError, KeyError) as e:
            if isinstance(e, AnalysisError):
                raise
            raise AnalysisError(f"{text_path}: unreadable basis file ({e})") from e


def _write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    target = os.fspath(path)
    tmp = f"{target}.tmp{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)


class StreamingPCA:
    """Exact PCA of (per-filter scaled) filters, fitted in batches through the Gram matrix.

    Follows scikit-learn's estimator contract: keyword-only parameters, learned attributes end in ``_``,
    ``fit`` streams through ``partial_fit``.

    Parameters
    ----------
    n_components : int, optional
        Components kept by :meth:`transform` (default: all d).
    scale : bool, default True
        Divide each filter by its max |value| before fitting (REFERENCE §3).
    batch_size : int, default 1_048_576
        Rows per step of :meth:`fit`.
    kernel : {"auto", "numba", "numpy"}
        Compute kernel; "auto" uses numba when installed.

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
                 kernel: str = "auto") -> None:
        self.n_components = n_components
        self.scale = scale
        self.batch_size = batch_size
        self.kernel = kernel

    def _validate(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"X must be 2-D (n_filters, d), got shape {x.shape}")
        if x.dtype not in (np.float16, np.float32):
            x = x.astype(np.float32)
        if hasattr(self, "n_features_in_") and x.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {x.shape[1]} features, the PCA was fitted with {self.n_features_in_}")
        if self.n_components is not None and not 1 <= self.n_components <= x.shape[1]:
            raise ValueError(f"n_components must be in [1, {x.shape[1]}], got {self.n_components}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
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
        if self.scale:
            spec = PassSpec(d=d, kernel=resolve_kernel(self.kernel))
            part = run_rows(x, np.array([0]), np.array([len(x)]), np.array([0]), spec, 1)
            self.gram_ += part.gram
            self.sums_ += part.sums
        else:
            xf = x.astype(np.float64)
            self.gram_ += xf.T @ xf
            self.sums_ += xf.sum(axis=0)
        self.n_samples_seen_ += len(x)
        if self.n_samples_seen_ >= 2:
            self._update()
        return self

    def fit(self, X: Any, y: Any = None) -> StreamingPCA:
        """Fit from scratch on X, streaming it in ``batch_size`` rows."""
        x = self._validate(X)
        for attr in ("gram_", "sums_", "n_samples_seen_", "n_features_in_"):
            self.__dict__.pop(attr, None)
        for a in range(0, max(len(x), 1), self.batch_size):
            self.partial_fit(x[a : a + self.batch_size])
        return self

    def _update(self) -> None:
        mean, comps, var, ratio = pca_from_moments(self.gram_, self.sums_, self.n_samples_seen_)
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
        mean, comps, var, ratio = pca_from_moments(self.gram_, self.sums_, self.n_samples_seen_)
        k = int(round(np.sqrt(len(mean))))
        return PCAResult(shape or (f"{k}x{k}" if k * k == len(mean) else str(len(mean))), mean, comps, var, ratio,
                         int(self.n_samples_seen_))


def fit_pca(store: Any, shape: str = "3x3", where: str | None = None, params: Sequence[Any] | None = None, *,
            engine: Any = None, kernel: str = "auto", task_rows: int = 4_000_000,
            n_threads: int | None = None) -> PCAResult:
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

    Examples
    --------
    >>> basis = fit_pca("zoo.fdb", where="task = ?", params=["Classification"])  # doctest: +SKIP
    >>> basis.explained_variance_ratio[:4]  # doctest: +SKIP
    """
    from ..engine import get_engine
    from ._run import run_pass

    store = _as_store(store)
    plan = make_plan(store, shape, where, params)
    spec = PassSpec(d=plan.d, kernel=resolve_kernel(kernel))
    total = run_pass(plan, spec, get_engine(engine, n_threads=n_threads), task_rows)
    return _result_from(plan, total, where, params)


def _result_from(plan: Any, total: Any, where: Any, params: Any) -> PCAResult:
    mean, comps, var, ratio = pca_from_moments(total.gram, total.sums, total.n)
    return PCAResult(plan.shape, mean, comps, var, ratio, int(total.n), int(len(plan.layers)),
                     int(plan.layers["model_id"].nunique()),
                     {"store": plan.root, "where": where, "params": list(params) if params else None})


def _as_store(store: Any) -> Any:
    if hasattr(store, "sql") and hasattr(store, "root"):
        return store
    from ..store import open_store

    return open_store(store)
