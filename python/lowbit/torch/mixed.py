"""Automatic mixed precision for PyTorch models (lowbit.torch.plan_mixed): each nn.Linear's
sensitivity to each candidate format, measured on the model's own output, then the cheapest
per-layer choice whose whole model meets an accuracy budget, verified end to end.

How it works (docs/conversion.md, "Mixed precision"):

1. The float model runs once on the example inputs (the reference output; each linear's input
   is kept for the latency objective).
2. Sensitivity: for every linear and every candidate config, only that layer is replaced by its
   quantized form (the float module put back afterwards) and the model runs again; the loss is
   what the metric lost against the float model (cosine: 1 - the mean cosine of the outputs'
   rows; a callable metric: its float score less its score). Its cost is the layer's bytes
   (objective="bytes": the lowbit layer's `nbytes`, the float layer's for float32) or its
   median time on the input the layer saw (objective="latency").
3. Choice: every layer starts at its cheapest candidate; while the summed losses exceed the
   allowance, the change of one layer to a costlier candidate with the most loss removed per
   unit of cost added is taken (float32, loss 0, is always a candidate).
4. Verification: the model quantized with the plan runs on the example inputs; when it misses
   the budget (losses do not add exactly), the allowance shrinks by the ratio and step 3 goes
   on from there, until the plan meets the budget (all float32 does, trivially).

The plan is a {layer name: config or None (float32)} dict that `quantize_` takes (the names
are exact fnmatch patterns; layers outside it stay float).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from ..quant.config import (CONFIGS_BY_NAME, Float16WeightOnlyConfig, Int4DynamicConfig,
                            Int4WeightOnlyConfig, Int8DynamicConfig, QuantConfig, check_config)
from ..report.measure import call, fresh_inputs
from .._core.checks import check_bool
from ._modules import named_modules_all
from .layers import QuantizedLinear

Metric = Union[str, Callable[[nn.Module], float]]


def default_candidates() -> tuple[Optional[QuantConfig], ...]:
    """The formats plan_mixed tries when none are given, cheapest first: int4 W4A8 and int4
    weight-only (group 32, asymmetric), int8 dynamic, float16 weights, float32 (None).

    Returns
    -------
    tuple of (QuantConfig or None)

    Raises
    ------
    None
    """
    return (Int4DynamicConfig(32, symmetric=False), Int4WeightOnlyConfig(32, symmetric=False),
            Int8DynamicConfig(), Float16WeightOnlyConfig(), None)


@dataclasses.dataclass
class LayerChoice:
    """One layer's measurements and the plan's pick: per candidate (its describe() line, or
    "float32"), the loss and the cost; `chosen` indexes them."""

    name: str
    shape: tuple[int, int]
    candidates: list[Optional[QuantConfig]]
    losses: list[float]
    costs: list[float]
    chosen: int = 0


class MixedPlan(dict):
    """{layer name: config, or None for float32}: what `lowbit.torch.quantize_` takes, with the
    measurements behind it. `print(plan)` shows the table.

    Attributes: `layers` (a LayerChoice per planned linear, in model order), `metric` ("cosine"
    or the callable's name), `budget`, `objective` ("bytes" or "latency"), `float_cost` and
    `cost` (the planned layers' total cost in float32 and under the plan: bytes, or seconds per
    call), `predicted` (summed losses of the choices) and `achieved` (the metric of the model
    quantized with the plan, measured; cosine: mean cosine).

    Parameters
    ----------
    layers
        The LayerChoice of each planned linear, `chosen` set.
    metric, budget, objective
        As plan_mixed was given them (metric by name).
    achieved, predicted
        The measured metric of the planned model and the summed layer losses.

    Raises
    ------
    None
        Made by plan_mixed (or from_json).
    """

    def __init__(self, layers: list[LayerChoice], metric: str, budget: float, objective: str,
                 achieved: float, predicted: float) -> None:
        super().__init__((c.name, c.candidates[c.chosen]) for c in layers)
        self.layers = layers
        self.metric = metric
        self.budget = budget
        self.objective = objective
        self.achieved = achieved
        self.predicted = predicted
        self.float_cost = float(sum(c.costs[-1] if c.candidates[-1] is None else 0.0
                                    for c in layers))
        self.cost = float(sum(c.costs[c.chosen] for c in layers))

    def table(self) -> str:
        """The plan as a text table: each layer's shape, chosen format, its loss and cost, and
        the totals.

        Returns
        -------
        str

        Raises
        ------
        None
        """
        unit = "KB" if self.objective == "bytes" else "us"
        scale = 1e-3 if self.objective == "bytes" else 1e6
        rows = [("layer", "shape", "format", "loss", f"cost {unit}")]
        for c in self.layers:
            rows.append((c.name, f"{c.shape[0]}x{c.shape[1]}", _label(c.candidates[c.chosen]),
                         f"{c.losses[c.chosen]:.2e}", f"{c.costs[c.chosen] * scale:.1f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(v.ljust(w) if i < 3 else v.rjust(w)
                           for i, (v, w) in enumerate(zip(r, widths))) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        ratio = self.float_cost / self.cost if self.cost else float("inf")
        lines.append(f"{self.objective}: {self.cost * scale:.1f} {unit} planned vs "
                     f"{self.float_cost * scale:.1f} {unit} float32 ({ratio:.2f}x smaller)"
                     if self.objective == "bytes" else
                     f"{self.objective}: {self.cost * scale:.1f} {unit} planned vs "
                     f"{self.float_cost * scale:.1f} {unit} float32")
        lines.append(f"{self.metric}: {self.achieved:.6f} measured (budget {self.budget:.6g}); "
                     f"summed layer losses {self.predicted:.2e}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_json(self) -> str:
        """The plan's choices as JSON ({layer name: {"format": name, **fields}} or null): what
        `from_json` reads back.

        Returns
        -------
        str

        Raises
        ------
        None
        """
        return json.dumps({name: _config_record(cfg) for name, cfg in self.items()}, indent=1)

    @staticmethod
    def from_json(text: str) -> dict[str, Optional[QuantConfig]]:
        """The {layer name: config or None} mapping of a saved plan (`to_json`), for
        `quantize_`.

        Parameters
        ----------
        text
            What to_json wrote.

        Returns
        -------
        dict

        Raises
        ------
        ValueError
            Not a plan's JSON: unknown format names or fields, or a record of another shape.
        """
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a plan's JSON is an object {layer name: format record or null}")
        out: dict[str, Optional[QuantConfig]] = {}
        for name, rec in data.items():
            if rec is None:
                out[name] = None
                continue
            if not isinstance(rec, dict) or rec.get("format") not in CONFIGS_BY_NAME:
                raise ValueError(f"layer {name!r}: unknown format record {rec!r}")
            fields = {k: v for k, v in rec.items() if k != "format"}
            try:
                out[name] = CONFIGS_BY_NAME[rec["format"]](**fields)
            except TypeError as e:
                raise ValueError(f"layer {name!r}: {e}") from None
        return out


def _label(cfg: Optional[QuantConfig]) -> str:
    return "float32" if cfg is None else cfg.describe()


def _config_record(cfg: Optional[QuantConfig]) -> Optional[dict[str, Any]]:
    if cfg is None:
        return None
    return {"format": cfg.name, **dataclasses.asdict(cfg)}


def _output_rows(out: Any) -> torch.Tensor:
    """The model output the cosine metric compares, as (rows, features) float64: a tensor, or a
    dict's "sentence_embedding" (SentenceTransformer) or first floating tensor, or a sequence's
    first; one row per leading index."""
    if isinstance(out, dict) or hasattr(out, "keys"):
        if "sentence_embedding" in out:
            return _output_rows(out["sentence_embedding"])
        for v in out.values():
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                return _output_rows(v)
    if isinstance(out, (tuple, list)) and out:
        return _output_rows(out[0])
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        raise TypeError("metric='cosine' needs the model to return a floating tensor (or a dict "
                        "/ tuple holding one); pass metric=callable(model) -> score otherwise")
    t = out.detach().to(torch.float64)
    return t.reshape(t.shape[0], -1) if t.dim() > 1 else t.reshape(1, -1)


def _mean_cosine(ref: torch.Tensor, got: torch.Tensor) -> float:
    num = (ref * got).sum(1)
    den = ref.norm(dim=1) * got.norm(dim=1)
    cos = torch.where(den > 0, num / den.clamp_min(1e-300),
                      torch.ones_like(num))   # two zero rows agree
    return float(cos.mean())


def _linears(model: nn.Module, names: Optional[Sequence[str]]) -> list[tuple[str, nn.Linear]]:
    found = [(n, m) for n, m in named_modules_all(model) if isinstance(m, nn.Linear)]
    if names is None:
        return found
    by_name = dict(found)
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"layers: {missing[:4]} are not nn.Linear modules of the model")
    return [(n, by_name[n]) for n in names]


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


def _time_layer(layer: nn.Module, x: torch.Tensor, repeats: int = 7) -> float:
    layer(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        layer(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def plan_mixed(model: nn.Module, example_inputs: Any, *, metric: Metric = "cosine",
               budget: float = 0.995, candidates: Optional[Sequence[Optional[QuantConfig]]] = None,
               objective: str = "bytes", layers: Optional[Sequence[str]] = None,
               progress: Optional[bool] = None) -> MixedPlan:
    """Picks a format for each nn.Linear of `model` that minimises the model's bytes (or its
    linears' latency) while the whole model meets `budget` (see the module docstring for the
    method). The model is not changed.

    Parameters
    ----------
    model
        A float PyTorch model (its nn.Linear layers are planned; others stay as they are).
    example_inputs
        What the model is called with while planning: a tuple (positional), a dict (keyword,
        e.g. a tokenizer's output) or one argument. For metric="cosine" use inputs the plan
        should hold on (held-out sentences are the better check afterwards).
    metric
        "cosine" (default): the mean cosine similarity of the quantized model's output rows to
        the float model's (the output tensor, a SentenceTransformer's "sentence_embedding", or a
        dict's / tuple's first floating tensor). Or a callable metric(model) -> float, higher
        is better (e.g. accuracy on a validation set), called on the float model and on each
        trial model; example_inputs are then only for latency.
    budget
        The lowest acceptable metric for the whole model: for cosine, e.g. 0.995; for an
        accuracy callable, e.g. float accuracy - 0.005.
    candidates
        The configs to choose from (None stands for float32 and is always added): default
        `default_candidates()`. Calibrated (static) configs are refused.
    objective
        "bytes" (default: the layers' bytes) or "latency" (the layers' median time on the
        inputs they saw, on this CPU).
    layers
        Names of the linears to plan (default: all); the others stay float.
    progress
        A tqdm bar while measuring (if tqdm is installed): None shows it for 8 or more layers.

    Returns
    -------
    MixedPlan
        The {layer name: config or None} dict for `quantize_(model, plan)`, with the table
        (`print(plan)`).

    Raises
    ------
    TypeError
        model is not an nn.Module; a candidate is not a lowbit config or None; metric is not
        "cosine" or a callable; progress not a bool or None; an output cosine cannot compare.
    ValueError
        budget not finite, or above the float model's own metric; objective unknown; a
        calibrated candidate; no nn.Linear layers (or unknown `layers` names).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"plan_mixed takes an nn.Module, got {type(model).__name__}")
    if not (isinstance(metric, str) and metric == "cosine") and not callable(metric):
        raise TypeError(f"metric must be 'cosine' or a callable model -> score, got {metric!r}")
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget):
        raise ValueError(f"budget must be a finite number, got {budget!r}")
    if objective not in ("bytes", "latency"):
        raise ValueError(f"objective must be 'bytes' or 'latency', got {objective!r}")
    progress = None if progress is None else check_bool(progress, "progress")
    cands: list[Optional[QuantConfig]] = []
    for c in (default_candidates() if candidates is None else candidates):
        if c is not None:
            check_config(c, "candidate")
            if c.calibrated:
                raise ValueError(f"candidate {type(c).__name__} needs calibration; plan_mixed "
                                 "takes configs that quantize from the weights alone")
        if c not in cands:
            cands.append(c)
    if None in cands:
        cands.remove(None)
    cands.append(None)
    if not _linears(model, layers):
        raise ValueError("plan_mixed found no nn.Linear layers to plan")
    work = copy.deepcopy(model).eval()   # layers are swapped in and out of this copy
    targets = _linears(work, layers)
    with torch.inference_mode():
        seen: dict[str, torch.Tensor] = {}

        def keep_input(name: str) -> Callable[..., None]:
            def hook(m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
                if name not in seen:
                    seen[name] = args[0].detach().clone()
            return hook
        hooks = [work.get_submodule(n).register_forward_hook(keep_input(n)) for n, _ in targets]
        try:
            ref_out = call(work, fresh_inputs(example_inputs))
        finally:
            for h in hooks:
                h.remove()
        if metric == "cosine":
            ref = _output_rows(ref_out)
            base = 1.0

            def score(m: nn.Module) -> float:
                return _mean_cosine(ref, _output_rows(call(m, fresh_inputs(example_inputs))))
        else:
            base = float(metric(work))
            score = metric   # type: ignore[assignment]
        name = metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")
        if budget > base:
            raise ValueError(f"budget {budget} is above the float model's own {name} {base}")
        allowance = base - budget

        choices = _measure_layers(work, targets, cands, score, base, objective, seen, progress)
        predicted = _choose(choices, allowance)
        achieved = _verify(model, choices, score)
        for _ in range(8):
            if achieved >= budget:
                break
            loss = base - achieved
            allowance_now = max(predicted, 1e-12) * (allowance / max(loss, 1e-12)) * 0.9
            predicted = _choose(choices, allowance_now, keep=True)
            achieved = _verify(model, choices, score)
        else:
            while achieved < budget and _upgrade_one(choices):
                achieved = _verify(model, choices, score)
    return MixedPlan(choices, name, float(budget), objective, achieved, predicted)


def _measure_layers(work: nn.Module, targets: list[tuple[str, nn.Linear]],
                    cands: list[Optional[QuantConfig]], score: Callable[[nn.Module], float],
                    base: float, objective: str, seen: dict[str, torch.Tensor],
                    progress: Optional[bool]) -> list[LayerChoice]:
    bar = None
    if progress or (progress is None and len(targets) >= 8):
        try:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(targets) * (len(cands) - 1), desc="lowbit plan_mixed",
                       unit="trial")
        except ImportError:
            bar = None
    out = []
    try:
        for name, module in targets:
            kept, losses, costs = [], [], []
            for cfg in cands:
                if cfg is None:
                    layer: nn.Module = module
                    loss = 0.0
                    cost = (float(sum(t.nbytes for t in module.parameters()))
                            if objective == "bytes" else _time_layer(module, seen[name]))
                else:
                    try:
                        layer = QuantizedLinear.from_float(module, cfg)
                    except ValueError:    # a shape or value the format cannot take
                        if bar is not None:
                            bar.update(1)
                        continue
                    _set(work, name, layer)
                    try:
                        loss = max(0.0, base - float(score(work)))
                    finally:
                        _set(work, name, module)
                    cost = (float(layer.nbytes) if objective == "bytes"
                            else _time_layer(layer, seen[name]))
                    if bar is not None:
                        bar.update(1)
                kept.append(cfg)
                losses.append(loss)
                costs.append(cost)
            out.append(LayerChoice(name, (module.out_features, module.in_features), kept, losses,
                                   costs))
    finally:
        if bar is not None:
            bar.close()
    for c in out:   # start from the cheapest candidate
        c.chosen = int(np.argmin(c.costs))
    return out


def _choose(choices: list[LayerChoice], allowance: float, keep: bool = False) -> float:
    """Greedy: from the cheapest candidates (or, keep=True, the current choices), the upgrade
    with the most loss removed per cost added, until the summed loss is within allowance."""
    if not keep:
        for c in choices:
            c.chosen = int(np.argmin(c.costs))
    total = sum(c.losses[c.chosen] for c in choices)
    while total > allowance:
        best, best_gain = None, -1.0
        for c in choices:
            for j in range(len(c.candidates)):
                dl = c.losses[c.chosen] - c.losses[j]
                dc = c.costs[j] - c.costs[c.chosen]
                if dl <= 0:
                    continue
                gain = dl / max(dc, 1e-12)
                if gain > best_gain:
                    best, best_gain = (c, j), gain
        if best is None:
            break
        c, j = best
        total += c.losses[j] - c.losses[c.chosen]
        c.chosen = j
    return float(total)


def _upgrade_one(choices: list[LayerChoice]) -> bool:
    """The layer with the largest remaining loss moves to its loss-free (float32) choice."""
    worst = max(choices, key=lambda c: c.losses[c.chosen])
    if worst.losses[worst.chosen] <= 0:
        return False
    worst.chosen = len(worst.candidates) - 1
    return True


def _verify(model: nn.Module, choices: list[LayerChoice], score: Callable[[nn.Module], float]
            ) -> float:
    """The metric of a copy of `model` quantized with the current choices."""
    from .quantize import quantize_
    trial = copy.deepcopy(model).eval()
    plan = {c.name: c.candidates[c.chosen] for c in choices}
    if any(v is not None for v in plan.values()):
        quantize_(trial, plan, progress=False)
    return float(score(trial))
