"""Conv + BatchNorm (+ ReLU / ReLU6) patterns: found before a conversion, so that post-training
quantization folds the BatchNorm into the convolution's weight and bias and fuses the activation
into the conv kernel's epilogue (a clamp), and QAT trains with the BatchNorm folded as
torch.ao's ConvBn modules do.

Where torch.fx can trace the model, a pattern is a conv whose output goes only to a
BatchNorm (and that BatchNorm's only to a ReLU / ReLU6 module), each module called once in the
graph. Where it cannot (data-dependent control flow), the children of nn.Sequential containers
are read in order instead: conv, then BatchNorm, then ReLU / ReLU6, consecutively. A module
used anywhere else keeps its place; nothing is fused that would change what the model
computes (a BatchNorm that uses batch statistics in eval, track_running_stats=False, is not
folded)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

CONVS = (nn.Conv1d, nn.Conv2d)
NORMS = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d}
ACTIVATION_MODULES = {nn.ReLU: "relu", nn.ReLU6: "relu6"}


@dataclass
class ConvPattern:
    """A conv, the BatchNorm folded into it (or None) and the activation fused into its
    epilogue (None, "relu" or "relu6"), with the modules' names."""

    conv: str
    norm: Optional[str] = None
    act: Optional[str] = None
    activation: Optional[str] = None

    def fused_names(self) -> list[str]:
        return [n for n in (self.norm, self.act) if n is not None]

    def note(self, model: nn.Module) -> str:
        parts = [f"{n} ({type(model.get_submodule(n)).__name__})" for n in self.fused_names()]
        return f"fused {', '.join(parts)}" if parts else ""


def _foldable(norm: nn.Module, conv: nn.Module) -> bool:
    return (type(norm) is NORMS[type(conv)] and norm.track_running_stats
            and norm.running_mean is not None and norm.num_features == conv.out_channels)


def _activation_of(module: nn.Module) -> Optional[str]:
    if type(module) in ACTIVATION_MODULES:
        return ACTIVATION_MODULES[type(module)]
    return None


def _fx_patterns(model: nn.Module) -> Optional[dict[str, ConvPattern]]:
    try:
        import torch.fx
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:   # any tracing failure: fall back to the Sequential reading
        return None
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    modules = dict(model.named_modules())
    found: dict[str, ConvPattern] = {}
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), CONVS):
            continue
        conv = modules[node.target]
        pattern = ConvPattern(node.target)
        found[node.target] = pattern
        if calls[node.target] != 1:
            continue
        tail = node
        users = list(tail.users)
        if len(users) == 1 and users[0].op == "call_module" and calls[users[0].target] == 1 \
                and _foldable(modules[users[0].target], conv) and len(users[0].args) == 1:
            pattern.norm = users[0].target
            tail = users[0]
        users = list(tail.users)
        if len(users) == 1 and users[0].op == "call_module" and calls[users[0].target] == 1 \
                and _activation_of(modules[users[0].target]) and len(users[0].args) == 1:
            pattern.act = users[0].target
            pattern.activation = _activation_of(modules[users[0].target])
    return found


def sequential_runs(model: nn.Module
                    ) -> tuple[dict[int, int], list[tuple[str, list[tuple[str, nn.Module]]]]]:
    """The reading of a model that does not trace (here and in the integer chain): every
    nn.Sequential's (name prefix, [(child name, child)]) in order, and how many places of the
    model hold each module (by id; a module used twice is no one's only reader)."""
    uses: dict[int, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        uses[id(m)] = uses.get(id(m), 0) + 1
    runs = [(f"{name}." if name else "", list(module.named_children()))
            for name, module in model.named_modules() if isinstance(module, nn.Sequential)]
    return uses, runs


def _sequential_patterns(model: nn.Module) -> dict[str, ConvPattern]:
    found: dict[str, ConvPattern] = {}
    uses, runs = sequential_runs(model)
    for prefix, children in runs:
        for i, (child_name, child) in enumerate(children):
            if not isinstance(child, CONVS) or uses[id(child)] != 1:
                continue
            pattern = ConvPattern(prefix + child_name)
            j = i + 1
            if j < len(children) and uses[id(children[j][1])] == 1 \
                    and _foldable(children[j][1], child):
                pattern.norm = prefix + children[j][0]
                j += 1
            if j < len(children) and uses[id(children[j][1])] == 1 \
                    and _activation_of(children[j][1]):
                pattern.act = prefix + children[j][0]
                pattern.activation = _activation_of(children[j][1])
            found[pattern.conv] = pattern
    return found


def conv_patterns(model: nn.Module) -> dict[str, ConvPattern]:
    """{conv name: ConvPattern} for the convs the model's graph lets lowbit fuse (convs without
    a BatchNorm or activation after them are absent or have neither)."""
    found = _fx_patterns(model)
    return _sequential_patterns(model) if found is None else found


def fold_norm(w: np.ndarray, b: Optional[np.ndarray], norm: nn.Module
              ) -> tuple[np.ndarray, np.ndarray]:
    """The conv weight and bias with an eval-mode BatchNorm folded in (running statistics):
    w * gamma / sqrt(var + eps) per output channel, (b - mean) * gamma / sqrt(var + eps) + beta.
    Computed in float64 and rounded once to float32."""
    mean = norm.running_mean.detach().double().numpy()
    var = norm.running_var.detach().double().numpy()
    gamma = (norm.weight.detach().double().numpy() if norm.weight is not None
             else np.ones_like(mean))
    beta = norm.bias.detach().double().numpy() if norm.bias is not None else np.zeros_like(mean)
    factor = gamma / np.sqrt(var + norm.eps)
    shape = (-1,) + (1,) * (w.ndim - 1)
    wf = (w.astype(np.float64) * factor.reshape(shape)).astype(np.float32)
    b0 = np.zeros_like(mean) if b is None else b.astype(np.float64)
    bf = ((b0 - mean) * factor + beta).astype(np.float32)
    if not (np.isfinite(wf).all() and np.isfinite(bf).all()):
        raise ValueError("folding the BatchNorm gives NaN/Inf weights (check its running_var "
                         "and eps)")
    return wf, bf


def remove_fused(model: nn.Module, pattern: ConvPattern) -> None:
    """Puts nn.Identity where the pattern's BatchNorm and activation modules were (their work
    is now the quantized conv's), and records their names on the conv module
    (`fused_modules`: lowbit.save writes them, so lowbit.load can do the same to an unfused
    float skeleton)."""
    from ._modules import set_submodule
    for name in pattern.fused_names():
        set_submodule(model, name, nn.Identity())
    conv = model.get_submodule(pattern.conv)
    conv.fused_modules = tuple(conv.__dict__.get("fused_modules", ())) + tuple(
        pattern.fused_names())


def torch_activation(activation: Optional[str], x: torch.Tensor) -> torch.Tensor:
    if activation == "relu":
        return torch.relu(x)
    if activation == "relu6":
        return torch.clamp(x, 0.0, 6.0)
    return x


__all__ = ["ConvPattern", "conv_patterns", "fold_norm", "remove_fused", "torch_activation"]
