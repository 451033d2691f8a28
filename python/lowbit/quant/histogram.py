"""Per-channel histograms over a growing range, their quantiles, and the L2-optimal clipping range
search behind HistogramObserver. NumPy only."""
from __future__ import annotations

from typing import Optional

import numpy as np

from .._core.checks import QTYPES


class RangeHistogram:
    """`bins` equal bins per channel over [lo, hi], a range that always includes 0 and only
    grows. When a batch falls outside it, the old counts are redistributed into the wider
    bins assuming mass spread evenly within each old bin (so repeated growth does not drift
    the mass towards bin centres)."""

    def __init__(self, bins: int) -> None:
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 8:
            raise ValueError(f"bins must be an int >= 8, got {bins!r}")
        self.bins = bins
        self.lo: Optional[np.ndarray] = None
        self.hi: Optional[np.ndarray] = None
        self.counts: Optional[np.ndarray] = None

    def widths(self) -> np.ndarray:
        assert self.lo is not None and self.hi is not None
        return (self.hi - self.lo) / self.bins

    def update(self, rows: np.ndarray) -> None:
        """rows: (channels, n) values, already checked finite."""
        x = rows.astype(np.float64)
        bmin = np.minimum(x.min(axis=1), 0.0)
        bmax = np.maximum(x.max(axis=1), 0.0)
        if self.counts is None:
            self.lo, self.hi = bmin, bmax
            self.counts = np.zeros((x.shape[0], self.bins), np.float64)
        else:
            assert self.lo is not None and self.hi is not None
            new_lo, new_hi = np.minimum(self.lo, bmin), np.maximum(self.hi, bmax)
            if np.any(new_lo < self.lo) or np.any(new_hi > self.hi):
                self.counts = self._rebinned(new_lo, new_hi)
                self.lo, self.hi = new_lo, new_hi
        self.counts += self._count(x)

    def _index(self, x: np.ndarray, lo: np.ndarray, width: np.ndarray) -> np.ndarray:
        safe = np.where(width > 0, width, 1.0)
        idx = np.floor((x - lo[:, None]) / safe[:, None])
        return np.clip(idx, 0, self.bins - 1).astype(np.int64)

    def _count(self, x: np.ndarray) -> np.ndarray:
        assert self.lo is not None
        c = x.shape[0]
        idx = self._index(x, self.lo, self.widths()) + (np.arange(c) * self.bins)[:, None]
        return np.bincount(idx.reshape(-1), minlength=c * self.bins).reshape(c, self.bins)

    def _rebinned(self, new_lo: np.ndarray, new_hi: np.ndarray) -> np.ndarray:
        assert self.counts is not None and self.lo is not None
        c, b = self.counts.shape
        old_w = self.widths()
        new_w = (new_hi - new_lo) / b
        left = self.lo[:, None] + old_w[:, None] * np.arange(b)[None, :]
        j0 = self._index(left, new_lo, new_w)
        # The new bins are at least as wide as the old ones: an old bin spans at most two.
        first_end = new_lo[:, None] + new_w[:, None] * (j0 + 1)
        span = np.where(old_w > 0, old_w, 1.0)[:, None]
        frac = np.where(old_w[:, None] > 0, np.clip((first_end - left) / span, 0.0, 1.0), 1.0)
        j1 = np.minimum(j0 + 1, b - 1)
        base = (np.arange(c) * b)[:, None]
        out = np.bincount((j0 + base).reshape(-1), (self.counts * frac).reshape(-1), c * b)
        out += np.bincount((j1 + base).reshape(-1), (self.counts * (1 - frac)).reshape(-1), c * b)
        return out.reshape(c, b)

    def quantile(self, q: float) -> np.ndarray:
        """Per channel, the value below which a fraction q of the observed mass lies (linear
        interpolation inside the bin)."""
        assert self.counts is not None and self.lo is not None
        cdf = np.cumsum(self.counts, axis=1)
        target = q * cdf[:, -1]
        j = np.argmax(cdf >= target[:, None] - 1e-9 * cdf[:, -1:], axis=1)
        rows = np.arange(cdf.shape[0])
        before = np.where(j > 0, cdf[rows, np.maximum(j - 1, 0)], 0.0)
        inside = self.counts[rows, j]
        frac = np.where(inside > 0, np.clip((target - before) / np.where(inside > 0, inside, 1),
                                            0.0, 1.0), 0.0)
        return self.lo + (j + frac) * self.widths()

    def centers(self) -> np.ndarray:
        assert self.lo is not None
        w = self.widths()
        return self.lo[:, None] + w[:, None] * (np.arange(self.bins)[None, :] + 0.5)


def _quantization_error(values: np.ndarray, weights: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                        dtype: str, symmetric: bool) -> np.ndarray:
    """Weighted squared error sum(w * (v - dequant(quant(v)))^2) for each candidate range
    (lo[i], hi[i]), with lowbit's own parameter rules and float32 rounding."""
    from ..qtensor import _range_to_params
    _, qmin, qmax = QTYPES[dtype]
    scale, zero = _range_to_params(lo.astype(np.float32), hi.astype(np.float32), dtype, symmetric)
    v = values.astype(np.float32)[None, :]
    s = scale[:, None]
    z = zero.astype(np.float32)[:, None]
    q = np.clip(np.rint(v / s) + z, qmin, qmax)
    deq = ((q - z) * s).astype(np.float64)
    return (weights[None, :] * (values[None, :] - deq) ** 2).sum(axis=1)


def l2_optimal_range(values: np.ndarray, weights: np.ndarray, lo: float, hi: float, dtype: str,
                     symmetric: bool, grid: int = 128) -> tuple[float, float]:
    """The clipping range [lo', hi'] inside [lo, hi] (0 kept inside) minimizing the quantization
    L2 error of the histogram's mass. Symmetric: a 1-D search over the bound a in (0, max|.|].
    Asymmetric: coordinate descent, lower bound then upper bound, two rounds over a grid of
    `grid` candidates, then one finer round around the best pair."""
    keep = weights > 0
    values, weights = values[keep], weights[keep]
    if values.size == 0 or (lo == 0 and hi == 0):
        return lo, hi
    t = np.arange(1, grid + 1, dtype=np.float64) / grid
    if symmetric:
        amax = max(abs(lo), abs(hi))
        cand = amax * t
        best = cand[int(np.argmin(_quantization_error(values, weights, -cand, cand, dtype, True)))]
        fine = np.clip(best + amax / grid * np.linspace(-1, 1, 33), amax / (4 * grid), amax)
        err = _quantization_error(values, weights, -fine, fine, dtype, True)
        a = float(fine[int(np.argmin(err))])
        return -a, a
    cur_lo, cur_hi = lo, hi
    for _ in range(2):
        cand_lo = lo * t
        err = _quantization_error(values, weights, cand_lo, np.full_like(t, cur_hi), dtype, False)
        cur_lo = float(cand_lo[int(np.argmin(err))])
        cand_hi = hi * t
        err = _quantization_error(values, weights, np.full_like(t, cur_lo), cand_hi, dtype, False)
        cur_hi = float(cand_hi[int(np.argmin(err))])
    steps = np.linspace(-1, 1, 17) / grid
    lo_grid = np.clip(cur_lo + lo * steps, lo, 0.0)
    hi_grid = np.clip(cur_hi + hi * steps, 0.0, hi)
    pairs_lo = np.repeat(lo_grid, hi_grid.size)
    pairs_hi = np.tile(hi_grid, lo_grid.size)
    err = _quantization_error(values, weights, pairs_lo, pairs_hi, dtype, False)
    i = int(np.argmin(err))
    return float(pairs_lo[i]), float(pairs_hi[i])
