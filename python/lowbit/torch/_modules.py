"""Finding the modules a conversion touches and swapping them in place."""
from __future__ import annotations

from typing import Callable, Iterator, Optional

from torch import nn

FilterFn = Callable[[nn.Module, str], bool]


def named_modules_all(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Every (name, module), a module shared by several parents once per place it sits."""
    return model.named_modules(remove_duplicate=False)


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def linear_skip_reason(name: str, module: nn.Module, parents: dict[str, nn.Module]
                       ) -> Optional[str]:
    """Why a Linear must stay as it is, whatever the config (None if it may be converted)."""
    if isinstance(module, nn.modules.linear.NonDynamicallyQuantizableLinear):
        return ("the out_proj of nn.MultiheadAttention: its parent reads the weight directly "
                "and never calls this module")
    parent = parents.get(name.rpartition(".")[0])
    if isinstance(parent, nn.MultiheadAttention):
        return "inside nn.MultiheadAttention, which reads its weights directly"
    return None


def find(model: nn.Module, kinds: tuple[type, ...], filter_fn: Optional[FilterFn],
         exclude: tuple[type, ...] = ()) -> list[tuple[str, nn.Module]]:
    """(name, module) for every module of one of `kinds` (subclasses included, `exclude`d types
    not) that filter_fn(module, name) accepts, in definition order."""
    found = []
    for name, module in named_modules_all(model):
        if not name or not isinstance(module, kinds) or isinstance(module, exclude):
            continue
        if filter_fn is not None and not filter_fn(module, name):
            continue
        found.append((name, module))
    return found
