"""lowbit.torch.plan_mixed: the automatic per-layer format choice under an accuracy budget."""
from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lowbit  # noqa: E402
import lowbit.torch as lt  # noqa: E402


class Fragile(torch.nn.Module):
    """`robust` feeds a small-gain head: any format is fine for it. `fragile`'s rows come in
    pairs that differ by 1e-4 relative, and the output is their difference times 1e3: rounding
    the weight to int4, int8 or float16 erases the differences, so only float32 keeps it."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.robust = torch.nn.Linear(96, 128)
        self.fragile = torch.nn.Linear(96, 128)
        self.head = torch.nn.Linear(128, 16)
        with torch.no_grad():
            base = torch.randn(64, 96, generator=g)
            w = torch.empty(128, 96)
            w[0::2] = base * (1 + 1e-4 * torch.randn(64, 96, generator=g))
            w[1::2] = base
            self.fragile.weight.copy_(w)
            self.fragile.bias.zero_()

    def forward(self, x):
        h = torch.relu(self.robust(x))
        f = self.fragile(x)
        return torch.cat([self.head(h), (f[:, 0::2] - f[:, 1::2]) * 1e3], 1)


def _x(n=48, seed=1):
    return torch.randn(n, 96, generator=torch.Generator().manual_seed(seed))


def test_fragile_layer_stays_float_and_robust_one_gets_the_cheapest_format(tmp_path):
    model = Fragile().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plan = lt.plan_mixed(model, (_x(),), budget=0.999, progress=False)
    assert plan["fragile"] is None
    # the cheapest candidates are the two int4 ones (equal bytes: the one with less loss wins)
    assert plan["robust"].bits == 4 and plan["head"].bits == 4
    assert plan.achieved >= 0.999
    # the model itself is untouched
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    # the table names every layer, the totals and the measured metric
    text = str(plan)
    assert "fragile" in text and "float32" in text and "measured" in text
    # quantize_ takes the plan; on held-out inputs it still meets the budget
    q = copy.deepcopy(model)
    lt.quantize_(q, plan)
    assert isinstance(q.fragile, torch.nn.Linear) and isinstance(q.robust, lt.QuantizedLinear)
    x = _x(64, seed=7)
    with torch.no_grad():
        a, b = model(x), q(x)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1).mean()
    assert cos > 0.999
    # the plan round-trips through JSON, the planned model through save / load
    again = lt.MixedPlan.from_json(plan.to_json())
    assert again == dict(plan)
    lowbit.save(q, tmp_path / "planned.lowbit")
    loaded = lowbit.load(tmp_path / "planned.lowbit", copy.deepcopy(model))
    assert torch.equal(loaded(x), q(x))


def test_a_looser_budget_buys_fewer_bytes():
    model = Fragile().eval()
    tight = lt.plan_mixed(model, (_x(),), budget=0.99999, progress=False)
    loose = lt.plan_mixed(model, (_x(),), budget=-1.0, progress=False)   # anything goes
    assert loose.cost < tight.cost
    assert tight.achieved >= 0.99999
    assert loose["fragile"] is not None   # with no budget every layer takes its cheapest
    assert loose.cost == sum(min(c.costs) for c in loose.layers)


def test_callable_metric_and_latency_objective():
    model = Fragile().eval()
    x = _x()
    with torch.no_grad():
        target = model(x).argmax(1)

    def agreement(m):
        with torch.no_grad():
            return float((m(x).argmax(1) == target).float().mean())

    plan = lt.plan_mixed(model, (x,), metric=agreement, budget=0.9, objective="latency",
                         candidates=[lowbit.Int8DynamicConfig(), lowbit.Float16WeightOnlyConfig()],
                         progress=False)
    assert plan.metric == "agreement" and plan.objective == "latency"
    assert plan.achieved >= 0.9
    assert set(plan) == {"robust", "fragile", "head"}
    for c in plan.layers:
        assert c.candidates[-1] is None and len(c.candidates) == 3
        assert all(t > 0 for t in c.costs)


def test_bad_arguments():
    model = Fragile().eval()
    with pytest.raises(TypeError, match="nn.Module"):
        lt.plan_mixed(object(), (_x(),))
    with pytest.raises(TypeError, match="metric"):
        lt.plan_mixed(model, (_x(),), metric="accuracy")
    with pytest.raises(ValueError, match="budget"):
        lt.plan_mixed(model, (_x(),), budget=float("nan"))
    with pytest.raises(ValueError, match="above the float model"):
        lt.plan_mixed(model, (_x(),), budget=1.5)
    with pytest.raises(ValueError, match="objective"):
        lt.plan_mixed(model, (_x(),), objective="speed")
    with pytest.raises(ValueError, match="calibration"):
        lt.plan_mixed(model, (_x(),), candidates=[lowbit.Int8StaticConfig()])
    with pytest.raises(TypeError):
        lt.plan_mixed(model, (_x(),), candidates=["int8"])
    with pytest.raises(ValueError, match="not nn.Linear"):
        lt.plan_mixed(model, (_x(),), layers=["nope"])
    with pytest.raises(ValueError, match="unknown format"):
        lt.MixedPlan.from_json('{"a": {"format": "int3"}}')
