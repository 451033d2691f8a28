"""Observers (lowbit.observers, NumPy only): statistics, the numeric contract's parameter rules,
per-tensor and per-channel, batching, and bad input."""
from __future__ import annotations

import numpy as np
import pytest

import lowbit
from lowbit.quant.histogram import RangeHistogram
from lowbit.quant.observers import (HistogramObserver, MinMaxObserver, MovingAverageMinMaxObserver,
                                    PercentileObserver)
from conftest import F32

ALL = [MinMaxObserver, MovingAverageMinMaxObserver, PercentileObserver, HistogramObserver]


def _data(rng, shape=(64, 48), outliers=True):
    x = rng.standard_normal(shape).astype(F32)
    if outliers:
        x.reshape(-1)[rng.integers(0, x.size, 5)] *= F32(12)
    return x


def ref_params(lo, hi, dtype, symmetric):
    """The contract's rules, written out: range [min(0, lo), max(0, hi)], scale 1 for a zero
    range."""
    qmin, qmax = {"uint8": (0, 255), "int8": (-128, 127), "uint4": (0, 15), "int4": (-8, 7)}[dtype]
    lo, hi = F32(min(F32(0), F32(lo))), F32(max(F32(0), F32(hi)))
    if symmetric:
        scale = F32(max(abs(lo), abs(hi)) / F32(127 if dtype in ("int8", "uint8") else 7))
        zero = {"uint8": 128, "int8": 0, "uint4": 8, "int4": 0}[dtype]
        return (F32(1) if scale == 0 else scale), zero
    scale = F32((hi - lo) / F32(qmax - qmin))
    if scale == 0:
        return F32(1), int(np.clip(qmin, qmin, qmax))
    return scale, int(np.clip(np.rint(F32(qmin) - lo / scale), qmin, qmax))


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint4", "int4"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_minmax_per_tensor_follows_contract(rng, dtype, symmetric):
    x = _data(rng)
    obs = MinMaxObserver(dtype=dtype, symmetric=symmetric)
    for part in np.array_split(x, 5):
        obs.observe(part)
    scale, zero = obs.calculate_qparams()
    s, z = ref_params(x.min(), x.max(), dtype, symmetric)
    assert scale.shape == () and scale.dtype == np.float32 and scale == s
    assert zero.shape == () and int(zero) == z
    assert zero.dtype == (np.int8 if dtype in ("int8", "int4") else np.uint8)
    qt = lowbit.quantize(x, dtype, symmetric=symmetric)   # the same rule, lowbit's own code
    assert scale == qt.scale and zero == qt.zero_point


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_minmax_per_channel_matches_quantize(rng, axis):
    x = _data(rng, (12, 20))
    obs = MinMaxObserver(dtype="int8", symmetric=False, axis=axis)
    obs.observe(x[:5] if axis != 0 else x[:, :7])
    obs.observe(x[5:] if axis != 0 else x[:, 7:])
    scale, zero = obs.calculate_qparams()
    qt = lowbit.quantize(x, "int8", symmetric=False, axis=axis)
    np.testing.assert_array_equal(scale, qt.scale)
    np.testing.assert_array_equal(zero, qt.zero_point)


def test_range_always_includes_zero(rng):
    x = np.abs(_data(rng)) + F32(3)
    obs = MinMaxObserver()
    obs.observe(x)
    lo, hi = obs.range()
    assert lo == 0 and hi == x.max()
    scale, zero = obs.calculate_qparams()
    assert zero == 0 and scale == F32(x.max() / F32(255))
    neg = MinMaxObserver()
    neg.observe(-x)
    assert neg.calculate_qparams()[1] == 255


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("symmetric", [False, True])
def test_zero_range_gives_scale_one(cls, symmetric):
    obs = cls(symmetric=symmetric)
    obs.observe(np.zeros((4, 4), F32))
    scale, zero = obs.calculate_qparams()
    assert scale == 1
    assert zero == (128 if symmetric else 0)
    q = lowbit.quantize_linear(np.zeros(3, F32), scale, zero)
    np.testing.assert_array_equal(lowbit.dequantize_linear(q, scale, zero), 0)


@pytest.mark.parametrize("cls", ALL)
def test_bad_input(cls):
    obs = cls()
    with pytest.raises(ValueError, match="observed no data"):
        obs.calculate_qparams()
    for bad in (np.array([1, np.nan], F32), np.array([np.inf], F32), np.array([-np.inf], F32)):
        with pytest.raises(ValueError, match="NaN or Inf"):
            obs.observe(bad)
    with pytest.raises(TypeError, match="float32"):
        obs.observe(np.ones(3))
    assert not obs.observed   # rejected batches leave no trace
    with pytest.raises(ValueError):
        cls(dtype="int16")
    per_channel = cls(axis=1)
    per_channel.observe(np.ones((2, 3), F32))
    with pytest.raises(ValueError, match="channels"):
        per_channel.observe(np.ones((2, 4), F32))


@pytest.mark.parametrize("cls", ALL)
def test_clone_is_fresh_with_same_settings(rng, cls):
    obs = cls(dtype="int8", symmetric=True, axis=0)
    obs.observe(_data(rng))
    c = obs.clone()
    assert type(c) is cls and not c.observed
    assert (c.dtype, c.symmetric, c.axis) == ("int8", True, 0)
    assert repr(c) == repr(obs)
    obs.reset()
    assert not obs.observed


def test_moving_average_formula(rng):
    a, b = _data(rng), _data(rng) * F32(3)
    obs = MovingAverageMinMaxObserver(averaging_constant=0.25)
    obs.observe(a)
    obs.observe(b)
    c = F32(0.25)
    lo = F32(a.min() + c * (b.min() - a.min()))
    hi = F32(a.max() + c * (b.max() - a.max()))
    got_lo, got_hi = obs.range()
    assert got_lo == min(lo, 0) and got_hi == max(hi, 0)
    with pytest.raises(ValueError):
        MovingAverageMinMaxObserver(averaging_constant=0)


def test_percentile_close_to_numpy(rng):
    x = rng.standard_normal(200_000).astype(F32)
    x[:20] = F32(40)
    for p in (99.0, 99.9):
        obs = PercentileObserver(percentile=p)
        for part in np.array_split(x, 7):
            obs.observe(part)
        lo, hi = obs.range()
        width = (x.max() - x.min()) / 2048
        assert abs(hi - np.percentile(x, p)) <= 2 * width
        assert abs(lo - np.percentile(x, 100 - p)) <= 2 * width
        assert hi < 5   # the outliers at 40 are clipped
    full = PercentileObserver(percentile=100)
    full.observe(x)
    assert abs(full.range()[1] - x.max()) <= (x.max() - x.min()) / 2048


def test_percentile_per_channel(rng):
    x = rng.standard_normal((3, 50_000)).astype(F32) * np.array([[1], [2], [5]], F32)
    obs = PercentileObserver(percentile=99.0, axis=0)
    obs.observe(x)
    lo, hi = obs.range()
    np.testing.assert_allclose(hi, np.percentile(x, 99, axis=1), rtol=0.03)
    np.testing.assert_allclose(lo, np.percentile(x, 1, axis=1), rtol=0.03)
    assert obs.calculate_qparams()[0].shape == (3,)


def test_histogram_growth_keeps_mass_and_shape(rng):
    """Batches of growing range (rebinning each time) give nearly the histogram of all data at
    once."""
    x = rng.standard_normal(100_000) * np.linspace(0.1, 3, 100_000)
    h = RangeHistogram(256)
    for part in np.array_split(x, 10):
        h.update(part.reshape(1, -1))
    ref = RangeHistogram(256)
    ref.update(x.reshape(1, -1))
    assert h.counts is not None and ref.counts is not None
    assert h.counts.sum() == pytest.approx(x.size)
    for q in (0.01, 0.1, 0.5, 0.9, 0.99):
        assert h.quantile(q)[0] == pytest.approx(ref.quantile(q)[0], abs=0.05)


def _l2_error(x, scale, zero, dtype):
    q = lowbit.quantize_linear(x, scale, np.asarray(zero), dtype=dtype)
    return float(np.sum((x.astype(np.float64)
                         - lowbit.dequantize_linear(q, scale, np.asarray(zero))) ** 2))


@pytest.mark.parametrize("dtype,symmetric", [("uint8", False), ("int8", True), ("uint4", False),
                                             ("int4", True)])
def test_histogram_observer_is_near_l2_optimal(rng, dtype, symmetric):
    """The histogram search never loses to min/max (at 4 bits, clipping the outliers wins by a
    wide margin; at 8 bits keeping them is nearly optimal) and comes within a few percent of a
    brute-force search over the exact data."""
    x = _data(rng, (20_000,))
    x[:3] = F32(30)
    obs = HistogramObserver(dtype=dtype, symmetric=symmetric)
    minmax = MinMaxObserver(dtype=dtype, symmetric=symmetric)
    for part in np.array_split(x, 4):
        obs.observe(part)
        minmax.observe(part)
    err_hist = _l2_error(x, *obs.calculate_qparams(), dtype)
    err_minmax = _l2_error(x, *minmax.calculate_qparams(), dtype)
    assert err_hist <= 1.001 * err_minmax
    if dtype in ("uint4", "int4"):
        assert err_hist < 0.5 * err_minmax
    best = np.inf
    lo0, hi0 = min(float(x.min()), 0), float(x.max())
    ts = np.linspace(0.02, 1, 100)
    pairs = [(-a * hi0, a * hi0) for a in ts] if symmetric else \
        [(a * lo0, b * hi0) for a in ts[::3] for b in ts]
    for lo, hi in pairs:
        s, z = ref_params(lo, hi, dtype, symmetric)
        best = min(best, _l2_error(x, np.float32(s), np.array(z, np.int8 if "u" not in dtype
                                                                else np.uint8), dtype))
    assert err_hist <= 1.05 * best


def test_histogram_observer_per_channel(rng):
    w = _data(rng, (16, 64))
    obs = HistogramObserver(dtype="int8", symmetric=True, axis=0, bins=512)
    obs.observe(w)
    scale, zero = obs.calculate_qparams()
    assert scale.shape == (16,) and zero.shape == (16,) and np.all(zero == 0)
    assert np.all(scale <= np.abs(w).max(axis=1) / 127 + 1e-9)   # clipping only shrinks


def test_observer_is_a_passthrough(rng):
    x = _data(rng)
    obs = MinMaxObserver()
    assert obs(x) is x and obs.observed and obs.samples == x.size
    obs.observe(np.zeros((0, 3), F32))   # empty batches are ignored
    assert obs.samples == x.size
