"""The integer chain: two static quantized convolutions in a row, the second the first's only
reader (through nothing but the nn.Identity modules a fusion left, its ReLU / ReLU6 being
the first conv's clamp), hand each other uint8 activations instead of a float tensor.

The first layer computes its float output as always (the epilogue of docs/numeric_contract.md
and the clamp) and quantizes it at once with the second layer's input scale and zero point,
the static quantization the second layer would have applied to that float tensor, into the
NHWC rows its kernels write: a uint8 tensor (N, M, H, W) in channels_last memory (int8
activations shifted by 128, the kernels' own domain). The second layer reads those bytes as
they are. The model's output is the same, bit for bit, as with the chain off; the float
tensor between the two layers, its NHWC -> NCHW transpose, the second layer's quantization
pass and its NCHW -> NHWC transpose are gone.

The links come from the model's graph: torch.fx with lowbit's layers as leaves or, where the
model cannot be traced, the children of nn.Sequential containers in order. A link is made
only where that graph shows the second conv as the first's only reader; calling the first
layer on its own then returns the uint8 tensor (lowbit.torch.chain(model, False) undoes the
links). The second layer holds its input parameters as a small tensor the first layer shares,
so a load_state_dict that changes them changes what the first quantizes to as well."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from ._kinds import lowbit_types
from .conv import QuantizedConv2d
from .fuse import sequential_runs

_KEYS = ("_chain_in", "_chain_out", "chain_to", "chain_from")


def _static(module: Any) -> bool:
    return isinstance(module, QuantizedConv2d) and module.chain_qparams() is not None


def _describe(node: Any, modules: dict[str, nn.Module]) -> str:
    if node.op == "output":
        return "is the model's output"
    if node.op == "call_module":
        return f"goes to {type(modules[node.target]).__name__} {node.target!r}"
    target = getattr(node.target, "__name__", str(node.target))
    return f"goes to {target}()"


def _fx_links(model: nn.Module) -> Optional[tuple[dict[str, str], dict[str, str]]]:
    """({producer: consumer}, {static conv: why it returns to float}) from a torch.fx trace,
    or None when the model cannot be traced."""
    import torch.fx

    leaves = lowbit_types()

    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return isinstance(m, leaves) or super().is_leaf_module(m, qualname)

    try:
        graph = Tracer().trace(model)
    except Exception:   # any tracing failure: the Sequential reading instead
        return None
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    links: dict[str, str] = {}
    floats: dict[str, str] = {}
    for node in graph.nodes:
        if node.op != "call_module" or not _static(modules.get(node.target)):
            continue
        name = node.target
        if calls[name] != 1:
            floats[name] = f"returns float: called {calls[name]} times in the model's graph"
            continue
        tail = node
        while True:
            users = list(tail.users)
            if len(users) != 1:
                break
            user = users[0]
            if not (user.op == "call_module" and type(modules[user.target]) is nn.Identity
                    and calls[user.target] == 1 and len(user.args) == 1 and not user.kwargs):
                break
            tail = user
        users = list(tail.users)
        if len(users) != 1:
            floats[name] = f"returns float: its output has {len(users)} readers"
            continue
        user = users[0]
        consumer = modules.get(user.target) if user.op == "call_module" else None
        if consumer is None or not isinstance(consumer, QuantizedConv2d):
            floats[name] = f"returns float: its output {_describe(user, modules)}"
        elif not _static(consumer):
            floats[name] = f"returns float: the next conv {user.target!r} is dynamic"
        elif calls[user.target] != 1 or user.args != (tail,) or user.kwargs:
            floats[name] = f"returns float: the next conv {user.target!r} is called elsewhere too"
        else:
            links[name] = user.target
    return links, floats


def _sequential_links(model: nn.Module) -> tuple[dict[str, str], dict[str, str]]:
    links: dict[str, str] = {}
    floats: dict[str, str] = {}
    uses, runs = sequential_runs(model)
    for prefix, children in runs:
        for i, (child_name, child) in enumerate(children):
            if not _static(child):
                continue
            conv = prefix + child_name
            j = i + 1
            while j < len(children) and type(children[j][1]) is nn.Identity \
                    and uses[id(children[j][1])] == 1:
                j += 1
            if uses[id(child)] != 1:
                floats[conv] = "returns float: the module is used more than once"
            elif j == len(children):
                floats[conv] = ("returns float: last in its nn.Sequential (the model could not "
                                "be traced, so what reads it is unknown)")
            elif not _static(children[j][1]) or uses[id(children[j][1])] != 1:
                nxt = children[j][1]
                floats[conv] = (f"returns float: its output goes to {type(nxt).__name__} "
                                f"{prefix + children[j][0]!r}")
            else:
                links[conv] = prefix + children[j][0]
    return links, floats


def chain(model: nn.Module, enable: bool = True) -> dict[str, str]:
    """Links the model's consecutive static quantized convolutions into integer chains (the
    module docstring), or with enable=False removes every link. `lowbit.torch.convert` and
    `lowbit.load` call it; call it again after changing the model's structure.

    Parameters
    ----------
    model
        A converted model (its static QuantizedConv1d / QuantizedConv2d layers are looked at).
    enable
        False: unlink (every conv returns float again).

    Returns
    -------
    dict
        {static conv's name: note}: "integer chain: uint8 to 'b'", "integer chain: uint8 from
        'a'" or why its output returns to float.

    Raises
    ------
    TypeError
        model is not an nn.Module, or enable is not a bool.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"chain takes an nn.Module, got {type(model).__name__}")
    if not isinstance(enable, bool):
        raise TypeError(f"enable must be a bool, got {type(enable).__name__}")
    convs = {n: m for n, m in model.named_modules() if _static(m)}
    for m in model.modules():
        if isinstance(m, QuantizedConv2d):
            for key in _KEYS:
                m.__dict__.pop(key, None)
    if not convs:
        return {}
    if not enable:
        return {n: "integer chain off" for n in convs}
    found = _fx_links(model)
    links, floats = _sequential_links(model) if found is None else found
    notes = dict(floats)
    for a, b in links.items():
        producer, consumer = convs[a], convs[b]
        qparams = consumer.chain_qparams()
        assert qparams is not None
        shared = torch.tensor(qparams, dtype=torch.float64)
        consumer._chain_in = shared
        consumer.chain_from = a
        producer._chain_out = shared
        producer.chain_to = b
    for n in convs:
        parts = []
        if n in links:
            parts.append(f"integer chain: uint8 to {links[n]!r}")
        if "chain_from" in convs[n].__dict__:
            parts.append(f"integer chain: uint8 from {convs[n].chain_from!r}")
        if n in floats:
            parts.append(floats[n])
        notes[n] = "; ".join(parts) if parts else "returns float"
    return notes


__all__ = ["chain"]
