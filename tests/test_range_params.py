"""lowbit::range_params (the one range -> scale / zero point rule, in C++) against the same
rule written out in NumPy float32 from its documentation in lowbit.h, on ranges that reach each
branch: all-zero, one-sided, tiny and subnormal, huge (the asymmetric overflow branch), and
random; every quantized type, symmetric and not."""
import numpy as np
import pytest

from lowbit.qtensor import _range_to_params

QT = {"int8": (-128, 127, 127, 0), "uint8": (0, 255, 127, 128), "int4": (-8, 7, 7, 0),
      "uint4": (0, 15, 7, 8), "int16": (-32768, 32767, 32767, 0),
      "uint16": (0, 65535, 32767, 32768)}


def numpy_rule(lo, hi, name, symmetric):
    qmin, qmax, sym_max, sym_zero = QT[name]
    lo = lo.astype(np.float32)
    hi = hi.astype(np.float32)
    if symmetric:
        scale = np.maximum(np.abs(lo), np.abs(hi)) / np.float32(sym_max)
        zero = np.full(scale.shape, sym_zero, np.int32)
    else:
        lo = np.minimum(lo, np.float32(0))
        hi = np.maximum(hi, np.float32(0))
        d = np.float32(qmax - qmin)
        with np.errstate(over="ignore"):
            scale = (hi - lo) / d
        over = ~np.isfinite(scale)
        scale = np.where(over, hi / d - lo / d, scale).astype(np.float32)
        safe = np.where(scale == 0, np.float32(1), scale)
        zero = np.clip(np.rint(np.float32(qmin) - lo / safe), qmin, qmax).astype(np.int32)
    return np.where(scale == 0, np.float32(1), scale).astype(np.float32), zero


def ranges():
    rng = np.random.default_rng(11)
    fmax = np.finfo(np.float32).max
    tiny = np.finfo(np.float32).smallest_subnormal
    special = np.array([[0, 0], [-1, 0], [0, 1], [-fmax, fmax], [-fmax, 0], [0, fmax],
                        [-fmax / 2, fmax / 2 * 1.5], [-tiny, tiny], [-tiny, 0], [0, 3 * tiny],
                        [-1e-38, 2e-38], [-3, 5], [-0.0, 0.0], [2, 7], [-7, -2]], np.float32)
    rand = rng.standard_normal((4000, 2)).astype(np.float32) * \
        np.exp(rng.uniform(-80, 80, (4000, 1))).astype(np.float32)
    both = np.concatenate([special, rand])
    return np.minimum(both[:, 0], both[:, 1]), np.maximum(both[:, 0], both[:, 1])


@pytest.mark.parametrize("name", sorted(QT))
@pytest.mark.parametrize("symmetric", [True, False])
def test_range_params_matches_documented_rule(name, symmetric):
    lo, hi = ranges()
    with np.errstate(over="ignore", invalid="ignore"):
        want_scale, want_zero = numpy_rule(lo, hi, name, symmetric)
    scale, zero = _range_to_params(lo, hi, name, symmetric)
    assert scale.dtype == np.float32 and zero.dtype == np.int32
    np.testing.assert_array_equal(scale.view(np.int32), want_scale.view(np.int32))
    np.testing.assert_array_equal(zero, want_zero)


def test_range_params_keeps_shape():
    lo = -np.arange(6, dtype=np.float32).reshape(2, 3)
    scale, zero = _range_to_params(lo, -lo, "int8", False)
    assert scale.shape == (2, 3) and zero.shape == (2, 3)
    scale0, _ = _range_to_params(np.asarray(np.float32(-1)), np.asarray(np.float32(2)), "int8", True)
    assert scale0.shape == ()


@pytest.mark.parametrize("name", sorted(QT))
@pytest.mark.parametrize("symmetric", [True, False])
def test_torch_twin_gives_the_same_bits(name, symmetric):
    """lowbit.torch.fake_quant.range_to_params (QAT's copy of the rule, in torch ops) against
    the C++ rule, on the same ranges, overflowing ones included."""
    torch = pytest.importorskip("torch")
    from lowbit.torch.fake_quant import range_to_params
    lo, hi = ranges()
    scale, zero = _range_to_params(lo, hi, name, symmetric)
    t_scale, t_zero = range_to_params(torch.from_numpy(lo), torch.from_numpy(hi), name, symmetric)
    np.testing.assert_array_equal(t_scale.numpy().view(np.int32), scale.view(np.int32))
    np.testing.assert_array_equal(t_zero.numpy().astype(np.int32), zero)
