"""16-bit float weights (float16 / bfloat16, kernel families wf16f32 / wbf16f32): the rounding
of pack_weight against NumPy / ml_dtypes, linear against an exact oracle of the documented order
on every ISA path and thread count, the configs, save / load, and the PyTorch layer."""
from __future__ import annotations

import copy
import pickle
from fractions import Fraction

import numpy as np
import pytest

import lowbit
from lowbit._core.halfs import round_to_half, widen
from lowbit.nn import QuantizedLinear, Sequential

HALF = ("float16", "bfloat16")


def _bf16_reference(w: np.ndarray) -> np.ndarray:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    return w.astype(ml_dtypes.bfloat16).view(np.uint16)


def _reference_bits(w: np.ndarray, dtype: str) -> np.ndarray:
    return w.astype(np.float16).view(np.uint16) if dtype == "float16" else _bf16_reference(w)


def _all_finite_patterns(dtype: str) -> np.ndarray:
    p = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    mask = 0x7C00 if dtype == "float16" else 0x7F80
    return p[(p & mask) != mask]


@pytest.mark.parametrize("dtype", HALF)
def test_rounding_matches_numpy_and_ml_dtypes(dtype: str) -> None:
    pats = _all_finite_patterns(dtype)
    vals = widen(pats, dtype)
    # every value, the halfway point to the next pattern (ties), and points just off it
    nxt = widen((pats.astype(np.uint32) + 1).astype(np.uint16), dtype)
    ok = np.isfinite(nxt) & (np.sign(nxt) == np.sign(vals)) & (pats & 0x7FFF != 0x7FFF)
    mid = ((vals[ok].astype(np.float64) + nxt[ok]) / 2).astype(np.float32)
    rng = np.random.default_rng(0)
    rand = (rng.standard_normal(20000) * np.exp2(rng.integers(-30, 15, 20000))).astype(np.float32)
    w = np.concatenate([vals, mid, np.nextafter(mid, np.float32(0)), np.nextafter(mid, np.float32(np.inf)), rand])
    w = w[np.abs(w) < (65504 if dtype == "float16" else 3e38)].reshape(1, -1)
    want = _reference_bits(w, dtype)
    got = lowbit.pack_weight(w, dtype=dtype).qtensor().data
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(round_to_half(w, dtype), want)   # the NumPy twin


@pytest.mark.parametrize("dtype,big", [("float16", 65520.0), ("float16", -1e6),
                                        ("bfloat16", 3.4028235e38)])
def test_values_that_would_round_to_inf_are_refused(dtype: str, big: float) -> None:
    w = np.ones((2, 3), np.float32)
    w[1, 2] = big
    with pytest.raises(ValueError, match="weight value .* outside the"):
        lowbit.pack_weight(w, dtype=dtype)
    with pytest.raises(ValueError, match="outside the"):
        lowbit.Float16WeightOnlyConfig().quantize_weight(w, None) if dtype == "float16" \
            else lowbit.BFloat16WeightOnlyConfig().quantize_weight(w, None)
    w[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        lowbit.pack_weight(w, dtype=dtype)


def test_pack_weight_argument_errors() -> None:
    w = np.ones((4, 6), np.float32)
    with pytest.raises(ValueError, match="dtype must be"):
        lowbit.pack_weight(w, dtype="float8")
    with pytest.raises(ValueError, match="bits must be 16"):
        lowbit.pack_weight(w, bits=4, dtype="float16")
    with pytest.raises(ValueError, match="bits=16 needs dtype"):
        lowbit.pack_weight(w, bits=16)
    with pytest.raises(ValueError, match="takes no group_size"):
        lowbit.pack_weight(w, dtype="bfloat16", group_size=2)
    with pytest.raises(ValueError, match="takes no group_size"):
        lowbit.pack_weight(w, dtype="float16", symmetric=False)
    with pytest.raises(ValueError, match="without rounding"):
        lowbit.pack_weight(w.astype(np.float16), dtype="bfloat16")
    with pytest.raises(ValueError, match="2-D"):
        lowbit.pack_weight(np.ones(6, np.float32), dtype="float16")
    with pytest.raises(TypeError):
        lowbit.pack_weight(w.astype(np.float64), dtype="float16")


def _oracle(x: np.ndarray, wf: np.ndarray, bias) -> np.ndarray:
    """s = 0; s = fma(x[k], w[n, k], s) in k order (one rounding per step: the product is
    exact in float64, the sum is exact there or redone in fractions); y = s + bias."""
    m, k = x.shape
    n = wf.shape[0]
    s = np.zeros((m, n), np.float32)
    for kk in range(k):
        p = x[:, kk:kk + 1].astype(np.float64) * wf[:, kk].astype(np.float64)[None, :]
        t = p + s
        # two-sum: t is exact iff the error term is 0; else round the exact sum once
        z = t - s
        err = (p - z) + (s - (t - z))
        new = t.astype(np.float32)
        for i, j in zip(*np.nonzero(err)):
            exact = Fraction(float(p[i, j])) + Fraction(float(s[i, j]))
            new[i, j] = _round_fraction(exact)
        s = new
    return s if bias is None else s + bias


def _round_fraction(q: Fraction) -> np.float32:
    f = np.float32(float(q))   # float() rounds to nearest double; fix up to nearest float32
    best = f
    for c in (np.nextafter(f, np.float32(-np.inf)), np.nextafter(f, np.float32(np.inf))):
        dc, db = abs(Fraction(float(c)) - q), abs(Fraction(float(best)) - q)
        if dc < db or (dc == db and (int(np.float32(c).view(np.uint32)) & 1) == 0):
            best = c
    return np.float32(best)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 37, 5), (9, 130, 70), (2, 300, 65)])
def test_linear_matches_the_documented_order_on_every_path(dtype: str, m: int, k: int, n: int
                                                           ) -> None:
    rng = np.random.default_rng(m * 1000 + k + n)
    w = rng.standard_normal((n, k)).astype(np.float32)
    w[0, 0] = 3e-7   # a float16 subnormal
    x = rng.standard_normal((m, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    pw = lowbit.pack_weight(w, dtype=dtype)
    want = _oracle(x, pw.dequantize(), bias)
    want_nb = _oracle(x, pw.dequantize(), None)
    for isa in lowbit.cpu_info()["available"]:
        with lowbit.use_isa(isa):
            for threads in (1, 2, 3):
                lowbit.set_num_threads(threads)
                try:
                    np.testing.assert_array_equal(lowbit.linear(x, pw, bias).view(np.uint32),
                                                  want.view(np.uint32), err_msg=f"{isa}/t{threads}")
                    np.testing.assert_array_equal(lowbit.linear(x, pw).view(np.uint32),
                                                  want_nb.view(np.uint32), err_msg=f"{isa}/t{threads}")
                finally:
                    lowbit.set_num_threads(lowbit.cpu_info()["default_threads"])


@pytest.mark.parametrize("dtype", HALF)
def test_large_batch_blocked_form_is_bit_identical(dtype: str) -> None:
    rng = np.random.default_rng(7)
    w = rng.standard_normal((200, 333)).astype(np.float32)
    x = rng.standard_normal((70, 333)).astype(np.float32)
    pw = lowbit.pack_weight(w, dtype=dtype)
    with lowbit.use_isa("scalar"):
        want = lowbit.linear(x, pw)
    for isa in lowbit.cpu_info()["available"]:
        with lowbit.use_isa(isa):
            for threads in (1, 2):
                lowbit.set_num_threads(threads)
                np.testing.assert_array_equal(lowbit.linear(x, pw), want, err_msg=isa)
    lowbit.set_num_threads(lowbit.cpu_info()["default_threads"])
    # and each row alone (the direct form) gives the same bits as the batch
    np.testing.assert_array_equal(np.concatenate([lowbit.linear(x[i:i + 1], pw) for i in range(70)]),
                                  want)


@pytest.mark.parametrize("dtype", HALF)
def test_pack_keeps_16_bit_inputs_and_qtensor_round_trips(dtype: str) -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((17, 40)).astype(np.float32)
    bits = _reference_bits(w, dtype)
    src = bits.view(np.float16) if dtype == "float16" else bits.view(
        pytest.importorskip("ml_dtypes").bfloat16)
    pw = lowbit.pack_weight(src)
    assert pw.bits == 16 and pw.dtype == dtype and pw.family == {"float16": "wf16f32",
                                                                 "bfloat16": "wbf16f32"}[dtype]
    np.testing.assert_array_equal(pw.qtensor().data, bits)
    np.testing.assert_array_equal(pw.dequantize(), widen(bits, dtype))
    assert pw.nbytes == 64 * (40 + (40 % 2 if dtype == "bfloat16" else 0)) * 2
    again = pickle.loads(pickle.dumps(pw))
    np.testing.assert_array_equal(again.qtensor().data, bits)
    # a QTensor holding the patterns packs the same bytes
    np.testing.assert_array_equal(lowbit.pack_weight(pw.qtensor()).storage(), pw.storage())
    assert not np.shares_memory(src, pw.storage())


@pytest.mark.parametrize("cfg", [lowbit.Float16WeightOnlyConfig(),
                                 lowbit.BFloat16WeightOnlyConfig()])
def test_config_layer_save_load(cfg, tmp_path) -> None:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((33, 70)).astype(np.float32)
    b = rng.standard_normal(33).astype(np.float32)
    x = rng.standard_normal((4, 70)).astype(np.float32)
    w_before = w.copy()
    layer = QuantizedLinear.from_config(w, b, cfg)
    np.testing.assert_array_equal(w, w_before)
    assert layer.scheme == "weight_only" and layer.bits == 16
    assert layer.weight_nbytes == 64 * 70 * 2   # half of float32's 33 * 70 * 4, panel padded
    tol = 2e-3 if cfg.dtype == "float16" else 2e-2
    np.testing.assert_allclose(layer(x), x @ w.T + b, atol=tol * np.abs(x).sum(1).max())
    assert cfg.describe().startswith(cfg.dtype)
    path = tmp_path / "m.lowbit"
    lowbit.save(Sequential([layer]), path)
    back = lowbit.load(path)
    np.testing.assert_array_equal(back(x), layer(x))


def test_corrupt_half_record_is_refused(tmp_path) -> None:
    from lowbit.io.format import _qtensor
    pw = lowbit.pack_weight(np.ones((3, 4), np.float32), dtype="float16")
    qt = pw.qtensor()
    meta = {"dtype": "float16", "shape": [3, 4], "nibbles": False, "axis": None,
            "group_size": None}
    t = {"qweight": qt.data, "scale": np.array([2.0], np.float32), "zero_point": np.zeros(1, np.uint16)}
    with pytest.raises(ValueError, match="scale 1 and zero point 0"):
        _qtensor("", meta, t)
    t = {"qweight": qt.data.astype(np.int16), "scale": np.ones(1, np.float32),
         "zero_point": np.zeros(1, np.uint16)}
    with pytest.raises(ValueError, match="uint16 bit patterns"):
        _qtensor("", meta, t)


@pytest.mark.parametrize("name", ["Float16WeightOnlyConfig", "BFloat16WeightOnlyConfig"])
def test_torch_layer(name: str, tmp_path) -> None:
    torch = pytest.importorskip("torch")
    import lowbit.torch as lt
    cfg = getattr(lowbit, name)()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(130, 70), torch.nn.ReLU(), torch.nn.Linear(70, 9))
    x = torch.randn(5, 130)
    q = copy.deepcopy(model)
    lt.quantize_(q, cfg)
    y = q(x)
    assert q[0].family == ("wf16f32" if cfg.dtype == "float16" else "wbf16f32")
    # the NumPy layer computes the same bits
    np.testing.assert_array_equal(q[0].numpy_layer()(x.numpy()), q[0](x).numpy())
    torch.testing.assert_close(y, model(x), atol=3e-2 if cfg.dtype == "bfloat16" else 3e-3,
                               rtol=0)
    torch._dynamo.reset()   # other tests' compiled Sequentials count against the recompile limit
    assert torch.equal(torch.compile(q, fullgraph=True)(x), y)
    assert torch.equal(torch.export.export(q, (x,)).module()(x), y)
    q2 = copy.deepcopy(q)
    q2.load_state_dict(q.state_dict())
    assert torch.equal(q2(x), y)
    lowbit.save(q, tmp_path / "q.lowbit")
    assert torch.equal(lowbit.load(tmp_path / "q.lowbit", copy.deepcopy(model))(x), y)
    # a bfloat16 model: the output takes the input's dtype
    qb = copy.deepcopy(model).to(torch.bfloat16)
    lt.quantize_(qb, cfg)
    assert qb(x.bfloat16()).dtype == torch.bfloat16


def test_float16_embedding_table(tmp_path) -> None:
    from lowbit.nn import QuantizedEmbedding
    rng = np.random.default_rng(5)
    w = rng.standard_normal((50, 12)).astype(np.float32)
    w[3, 4] = 3e-7                     # a float16 subnormal
    e = QuantizedEmbedding.from_float(w, bits=16)
    assert e.bits == 16 and e.data.dtype == np.float16 and e.nbytes == 50 * 12 * 2 + 50 * 4
    idx = np.array([[3, 0], [49, 3]])
    np.testing.assert_array_equal(e(idx), w.astype(np.float16).astype(np.float32)[idx])
    with pytest.raises(ValueError, match="group_size"):
        QuantizedEmbedding.from_float(w, bits=16, group_size=4)
    big = w.copy()
    big[0, 0] = 1e6
    with pytest.raises(ValueError, match="outside the float16 range"):
        QuantizedEmbedding.from_float(big, bits=16)
    bad = e.data.copy()
    bad[1, 1] = np.inf
    with pytest.raises(ValueError, match="finite"):
        QuantizedEmbedding(bad, e.scale, 16, 12)
    path = tmp_path / "e.lowbit"
    lowbit.save({"emb": e}, path)
    back = lowbit.load(path)["emb"]
    np.testing.assert_array_equal(back(idx), e(idx))


def test_torch_float16_embedding(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    import lowbit.torch as lt
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(100, 24), torch.nn.Linear(24, 8))
    q = copy.deepcopy(model)
    lt.quantize_(q, lowbit.Float16WeightOnlyConfig(), embeddings=True, embedding_bits=16)
    assert q[0].qweight.dtype == torch.float16
    ii = torch.tensor([[1, 2, 99]])
    with torch.no_grad():
        want = model[0].weight.half().float()[ii]
    assert torch.equal(q[0](ii), want)
    y = q(ii)
    torch._dynamo.reset()
    assert torch.equal(torch.compile(q, fullgraph=True)(ii), y)
    assert torch.equal(torch.export.export(q, (ii,)).module()(ii), y)
    lowbit.save(q, tmp_path / "q.lowbit")
    assert torch.equal(lowbit.load(tmp_path / "q.lowbit", copy.deepcopy(model))(ii), y)
    q2 = copy.deepcopy(model)
    lt.quantize_(q2, lowbit.Float16WeightOnlyConfig(), embeddings=True, embedding_bits=16)
    q2.load_state_dict(q.state_dict())
    assert torch.equal(q2(ii), y)
    assert q.half()[0].qweight.dtype == torch.float16   # .half() keeps the table as it is
