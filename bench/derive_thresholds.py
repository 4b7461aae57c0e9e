"""Regenerate the randomness-threshold table T_d(n) that filterdb ships for kernels other than 3x3.

torchconvquality's 3x3 threshold is a logistic curve in log2(n) fitted to the low end ("min
distribution") of the variance entropy of random layers of n filters; filterdb keeps it exactly for 3x3.
For every other filter size d = kh * kw (the entropy of iid random filters depends on d and n only, not
on the kernel's aspect ratio) filterdb ships a table built by one documented procedure:

1. For n on a grid of log2(n) = 1.5, 2, ..., 14 (n = 3 ... 16384), draw R random layers of n filters
   with iid N(0, 1) values (Kaiming-uniform layers give slightly *higher* low quantiles: the entropy is
   scale-free and the uniform's spectrum is a little flatter, so the Gaussian table is the conservative
   choice: a layer must look at least as random as a Gaussian one to read > 1).
2. Take the 1 % quantile of their variance entropy (log10, the definition of filterdb.metrics).
3. filterdb interpolates the table linearly in log2(n) and holds the end values outside the grid.

Why a table and not the logistic form: fitted to d = 49 ... 121 the logistic's asymptote l + b rises
above log10(d), the largest possible entropy, so no random layer could ever read > 1. Why the 1 %
quantile: applied to d = 9 it lands within a few hundredths of torchconvquality's curve for n >= 9
(printed below), i.e. it is the same kind of "low end of the random distribution".

Run: ``.venv/bin/python bench/derive_thresholds.py`` (a few minutes on 2 cores). It prints the
dict literal that ``src/filterdb/_thresholds.py`` ships as ``_TABLE``.

``--spread`` prints ``_SPREAD`` instead: per filter size d (9 included) and grid n, the standard deviation of
the entropy of random Gaussian layers (log10 units, from 40 - 600 layers per point, fewer for the largest).
``check`` divides it by T(n) to get the spread of ``ve_norm`` of random layers of that size, against which it
states each entropy verdict's margin and marks the borderline ones (docs/metrics.md, "Borderline verdicts").
"""


from __future__ import annotations

import time

import numpy as np

SIZES = (2, 3, 4, 5, 6, 7, 8, 16, 25, 36, 49, 64, 81, 121)  # 1x2 ... 11x11; 9 (3x3) is torchconvquality's
LOG2_GRID = tuple(float(x) for x in np.arange(1.5, 14.01, 0.5))  # n = round(2^x)
QUANTILE = 0.01
SEED = 20220330
TCQ_3X3 = (1.2618047, 2.30436435, 0.88767525, -0.31050834)  # (l, x0, k, b) from torchconvquality 0.3.0


def logistic(log2n: np.ndarray, l: float, x0: float, k: float, b: float) -> np.ndarray:
    return l / (1.0 + np.exp(-k * (log2n - x0))) + b


def entropies(x: np.ndarray) -> np.ndarray:
    """Variance entropy (log10) of each of the R layers in x (R, n, d)."""
    xc = x - x.mean(axis=1, keepdims=True)
    cov = np.matmul(xc.transpose(0, 2, 1), xc)  # batched GEMM, far faster than einsum here
    ev = np.clip(np.linalg.eigvalsh(cov), 0.0, None)
    total = ev.sum(axis=1, keepdims=True)
    p = np.divide(ev, total, out=np.zeros_like(ev), where=total > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log10(p), 0.0)
    return -terms.sum(axis=1)


def random_entropies(n: int, d: int, trials: int, rng: np.random.Generator) -> np.ndarray:
    """The entropies of ``trials`` random (n, d) layers, drawn in chunks of about 10 M values."""
    values = []
    done = 0
    while done < trials:
        chunk = min(trials - done, max(1, int(1e7 / (n * d))))
        values.append(entropies(rng.standard_normal((chunk, n, d))))
        done += chunk
    return np.concatenate(values)


def low_quantile(n: int, d: int, rng: np.random.Generator) -> float:
    """The QUANTILE quantile of the entropy of random (n, d) layers."""
    # Fewer trials for large layers: the distribution narrows as n grows, and the cost grows with n * d^2.
    trials = int(np.clip(2e7 / (n * d * d), 200, 4000))
    return float(np.quantile(random_entropies(n, d, trials, rng), QUANTILE))


def spread(n: int, d: int, rng: np.random.Generator) -> float:
    """The standard deviation of the entropy of random (n, d) layers."""
    trials = int(np.clip(1e9 / (n * d * d), 40, 600))
    return float(np.std(random_entropies(n, d, trials, rng), ddof=1))


def main_spread() -> None:
    rng = np.random.default_rng(SEED + 1)
    ns = [int(round(2.0**x)) for x in LOG2_GRID]
    start = time.perf_counter()
    print("_SPREAD = {")
    for d in (9,) + SIZES:
        print(f"    {d}: ({', '.join(f'{spread(n, d, rng):.2e}' for n in ns)}),", flush=True)
    print("}")
    print(f"# ({time.perf_counter() - start:.0f} s)")


def main() -> None:
    import sys

    if "--spread" in sys.argv[1:]:
        main_spread()
        return
    rng = np.random.default_rng(SEED)
    ns = [int(round(2.0**x)) for x in LOG2_GRID]
    start = time.perf_counter()
    table: dict[int, list[float]] = {}
    for d in (9,) + SIZES:
        table[d] = [low_quantile(n, d, rng) for n in ns]
    tcq = logistic(np.log2(ns), *TCQ_3X3)
    diff = np.abs(tcq - np.array(table[9]))
    print(f"3x3 check: |1% quantile - torchconvquality T(n)| = " + " ".join(
        f"n={n}:{v:.3f}" for n, v in zip(ns, diff)))
    print(f"({time.perf_counter() - start:.0f} s)\n")
    print(f"GRID_N = {tuple(ns)}")
    print("_TABLE = {")
    for d in SIZES:
        print(f"    {d}: ({', '.join(f'{v:.4f}' for v in table[d])}),")
    print("}")


if __name__ == "__main__":
    main()
