"""convert: turn the layers prepare() and prepare_qat() inserted into lowbit layers."""
from __future__ import annotations

from typing import Optional

from torch import nn

from ._modules import finish, named_modules_all, swap_modules
from .calibrate import ObservedLinear
from .chain import chain
from .conv_prepared import FakeQuantConv, ObservedConv
from .qat import FakeQuantLinear
from ..quant.summary import ConversionSummary, Replaced


def convert(model: nn.Module, *, progress: Optional[bool] = None,
            integer_chain: bool = True) -> ConversionSummary:
    """Replaces every ObservedLinear (static PTQ: activation scale and zero point frozen from
    its observer) and FakeQuantLinear (QAT: the weights it rounds to, its activation
    parameters) by a lowbit QuantizedLinear, in place.

    Parameters
    ----------
    model
        A model prepared by prepare() or prepare_qat().
    progress
        As in quantize_.
    integer_chain
        Link consecutive static convolutions so they hand each other uint8 activations
        (lowbit.torch.chain: the same outputs bit for bit, less work); the summary's notes say
        where each chain returns to float. False: every conv returns float.

    Returns
    -------
    ConversionSummary
        The converted layers. Afterwards, as after quantize_, the layers know their names and
        the model's Hugging Face save methods refuse (lowbit.save instead).

    Raises
    ------
    TypeError
        integer_chain is not a bool.
    ValueError
        No prepared layers; an observer saw no data (all such layers named, before anything
        changes).
    """
    if not isinstance(integer_chain, bool):
        raise TypeError(f"integer_chain must be a bool, got {type(integer_chain).__name__}")
    found = [(n, m) for n, m in named_modules_all(model)
             if isinstance(m, (ObservedLinear, FakeQuantLinear, ObservedConv, FakeQuantConv))]
    if not found:
        raise ValueError(f"{type(model).__name__} has no layers prepared by prepare() or "
                         "prepare_qat(): nothing to convert")
    unobserved = sorted({n for n, m in found if isinstance(m, (ObservedLinear, ObservedConv))
                         and not m.observer.observed})
    if unobserved:
        raise ValueError(f"calibration never reached {len(unobserved)} layer(s): "
                         f"{', '.join(repr(n) for n in unobserved)}; run representative inputs "
                         "through the prepared model before convert()")
    summary = ConversionSummary("convert")

    def build(name: str, module: nn.Module) -> nn.Module:
        new = module.to_quantized(name)  # type: ignore[operator]
        size = module.weight.nbytes + (0 if module.bias is None else module.bias.nbytes)
        if isinstance(module, (ObservedConv, FakeQuantConv)):
            new.fused_modules = tuple(module.__dict__.get("fused_modules", ()))
            summary.replaced.append(Replaced(name, "conv", tuple(module.weight.shape),
                                             module.config.describe_conv(), size, new.nbytes))
            return new
        summary.replaced.append(Replaced(name, "linear", (module.out_features,
                                                          module.in_features),
                                         module.config.describe(), size,  # type: ignore[union-attr]
                                         new.nbytes))  # type: ignore[arg-type]
        return new

    swap_modules(model, found, build, progress, "lowbit convert")
    finish(model)
    notes = chain(model, integer_chain)
    for entry in summary.replaced:
        if entry.name in notes:
            entry.note = "; ".join(filter(None, [entry.note, notes[entry.name]]))
    return summary
