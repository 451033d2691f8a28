"""Finding the modules a conversion touches and swapping them in place."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Optional

from torch import nn

from .._core.checks import check_bool
from ..quant.summary import Kept
from ._hf import guard_hf_saves
from ._kinds import lowbit_types, prepared_types

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


def _kept_reason(module: nn.Module, embedding_reason: str) -> str:
    if isinstance(module, nn.Linear):
        return "an nn.Linear that filter_fn did not select"
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return "an nn.Conv that filter_fn (or the config) did not select"
    if isinstance(module, nn.modules.conv._ConvNd):
        return (f"a {type(module).__name__}: lowbit converts nn.Conv1d and nn.Conv2d (no 3-D or "
                "transposed convolution kernels)")
    if isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
        return ("lowbit has no recurrent kernel: torch's RNN op reads these weights itself "
                "(only nn.Linear and nn.Embedding are converted)")
    if isinstance(module, nn.EmbeddingBag):
        return "lowbit has no EmbeddingBag (quantize_(..., embeddings=True) converts nn.Embedding)"
    if isinstance(module, nn.Embedding):
        return embedding_reason
    if isinstance(module, nn.MultiheadAttention):
        return ("nn.MultiheadAttention reads its in_proj weights inside torch's attention op, "
                "which a lowbit layer cannot take part in")
    if isinstance(module, nn.Bilinear):
        return "lowbit has no bilinear kernel (only nn.Linear and nn.Embedding are converted)"
    if type(module).__name__ == "Conv1D":   # transformers' GPT-2 style linear, weight (in, out)
        return ("a Hugging Face Conv1D (a linear layer with a transposed weight), not an "
                "nn.Linear: lowbit does not convert it yet")
    return (f"holds weight matrices in its own Parameters; lowbit converts only nn.Linear and "
            "nn.Embedding modules")


def kept_float(model: nn.Module, handled: set[int], embedding_reason: str) -> list[Any]:
    """Every module (not in `handled`, the ids of the modules the conversion considered or
    produced) that holds a Parameter of two or more dims itself: a Conv2d, an LSTM, an
    EmbeddingBag, a custom module's raw weight matrix. They stay float; a conversion summary
    lists them so "1 replaced, 0 skipped" is never the whole story of a CNN. Norm layers (1-D
    Parameters only) are not listed."""
    kept = []
    for name, module in model.named_modules():
        if id(module) in handled:
            continue
        if any(p.dim() >= 2 for p in module.parameters(recurse=False)):
            kept.append(Kept(name, type(module).__name__, _kept_reason(module, embedding_reason)))
    return kept


def tied_weights(model: nn.Module, candidates: list[tuple[str, nn.Module]]
                 ) -> dict[str, list[str]]:
    """For each candidate whose weight Parameter another module of the model also holds
    (e.g. GPT-2's lm_head tied to the wte embedding): the names of those other modules."""
    holders: dict[int, list[tuple[str, nn.Module]]] = {}
    for name, module in named_modules_all(model):
        for p in module.parameters(recurse=False):
            holders.setdefault(id(p), []).append((name, module))
    ties: dict[str, list[str]] = {}
    for name, module in candidates:
        w = getattr(module, "weight", None)
        if not isinstance(w, nn.Parameter):
            continue
        others = [n for n, m in holders.get(id(w), []) if m is not module]
        if others:
            ties[name] = others
    return ties


def handled_ids(model: nn.Module, candidates: list[tuple[str, nn.Module]]) -> set[int]:
    """The modules a conversion considered (converted or skipped with a reason) and the lowbit
    or prepared modules now in the model: what kept_float must not list again."""
    lowbit = lowbit_types() + prepared_types()
    return {id(m) for _, m in candidates} | {id(m) for m in model.modules()
                                             if isinstance(m, lowbit)}


def set_names(model: nn.Module) -> None:
    """Records each lowbit layer's qualified name in the model (the first, for a module under
    several names), so its errors can say which layer failed."""
    lowbit = lowbit_types()
    for name, module in model.named_modules():
        if isinstance(module, lowbit):
            module.lowbit_name = name or None


def swap_modules(model: nn.Module, candidates: list[tuple[str, nn.Module]],
                 build: Callable[[str, nn.Module], Optional[nn.Module]],
                 progress: Optional[bool], desc: str) -> None:
    """The module-swap loop of every torch entry point (quantize_, prepare, prepare_qat,
    convert): for each (name, module) of `candidates`, in order and with a progress bar,
    `build(name, module)` gives the replacement (None: keep the module; build records why in
    its summary) and it takes the module's place. A module shared under several names is built
    once and the one replacement takes every place, so a model with tied modules stays tied."""
    done: dict[int, nn.Module] = {}
    for name, module in progress_bar(candidates, progress, desc):
        if id(module) in done:
            set_submodule(model, name, done[id(module)])
            continue
        new = build(name, module)
        if new is not None:
            set_submodule(model, name, new)
            done[id(module)] = new


# Progress bars (tqdm, when installed) from this many layers on, unless progress= says.
PROGRESS_MIN_LAYERS = 16


def progress_bar(items: list[Any], enabled: Optional[bool], desc: str) -> Iterable[Any]:
    # prepare, prepare_qat and convert check progress here, quantize_ before anything else
    enabled = None if enabled is None else check_bool(enabled, "progress")
    if enabled is False or (enabled is None and len(items) < PROGRESS_MIN_LAYERS):
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, unit="layer", leave=False)


def finish(model: nn.Module) -> None:
    """After any conversion: lowbit layers learn their names (for errors) and the model's
    Hugging Face save methods refuse (lowbit.torch._hf)."""
    set_names(model)
    guard_hf_saves(model)
