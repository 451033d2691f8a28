"""quantize_: replace a model's nn.Linear (and optionally nn.Embedding) layers in place."""
from __future__ import annotations

import math
import warnings
from typing import Any, Iterable, Optional

import numpy as np
import torch
from torch import nn

from ..nn.linear import QuantizedLinear as NumpyQuantizedLinear
from .._core.checks import check_bool
from ..report.measure import call
from ..quant.plan import UnsupportedLayer
from ..quant.config import QuantConfig
from ..quant.config import ConfigSpec, config_for
from ._modules import (FilterFn, find, finish, handled_ids, kept_float, linear_skip_reason,
                       named_modules_all, swap_modules, tied_weights)
from ._ops import like_channels_last
from ._speed import compare
from .embedding import QuantizedEmbedding, unsupported_embedding_reason
from .conv import QuantizedConv2d, conv_geometry, conv_skip_reason, quantized_conv_class
from .fuse import CONVS, ConvPattern, conv_patterns, fold_norm, remove_fused
from .layers import QuantizedLinear, float_weight
from .summary import ConversionSummary, Replaced, Skipped



def module_nbytes(module: nn.Module) -> int:
    """Bytes of a module's own tensors (parameters and buffers, each storage once) plus what a
    lowbit layer keeps outside torch tensors."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for t in list(module.parameters()) + [b for b in module.buffers() if b is not None]:
        key = (t.data_ptr(), t.nbytes)
        if key not in seen:
            seen.add(key)
            total += t.nbytes
    for m in module.modules():
        total += int(getattr(m, "hidden_nbytes", 0))
    return total


def model_nbytes(model: nn.Module) -> int:
    """The model's size: parameter + buffer bytes (shared tensors counted once) plus the packed
    weights lowbit layers hold outside torch tensors.

    Parameters
    ----------
    model
        An nn.Module, converted or not.

    Returns
    -------
    int
        Bytes.

    Raises
    ------
    AttributeError
        model is not an nn.Module (it has no parameters()).
    """
    return module_nbytes(model)


def _observed_rows(model: nn.Module, names: list[tuple[str, nn.Module]], example_inputs: Any
                   ) -> dict[str, int]:
    """Rows (product of the leading dims) each Linear gets when the model runs example_inputs."""
    rows: dict[str, int] = {}
    hooks = []
    for name, module in names:
        def hook(mod: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
            if args and isinstance(args[0], torch.Tensor) and args[0].dim() > 0:
                rows.setdefault(name, math.prod(args[0].shape[:-1]))
        hooks.append(module.register_forward_pre_hook(hook))
    try:
        with torch.inference_mode():
            call(model, example_inputs)
    finally:
        for h in hooks:
            h.remove()
    return rows


def _no_layers_error(model: nn.Module, filtered: bool, embeddings: bool) -> ValueError:
    what = ("nn.Linear, nn.Conv1d, nn.Conv2d or nn.Embedding" if embeddings
            else "nn.Linear, nn.Conv1d or nn.Conv2d")
    if filtered:
        return ValueError(f"filter_fn rejected every {what} layer of {type(model).__name__}: "
                          "nothing to quantize")
    kinds = sorted({type(m).__name__ for _, m in model.named_modules()} - {type(model).__name__})
    return ValueError(f"{type(model).__name__} has no {what} layers to quantize (it holds: "
                      f"{', '.join(kinds) or 'no submodules'})")


def quantize_(model: nn.Module, config: ConfigSpec, filter_fn: Optional[FilterFn] = None, *,
              embeddings: bool = False, embedding_bits: int = 8,
              embedding_group_size: Optional[int] = None, skip_slower: bool = False,
              example_batch_size: int = 1, example_inputs: Any = None,
              progress: Optional[bool] = None) -> ConversionSummary:
    """Replaces the model's nn.Linear (and optionally nn.Embedding) layers in place with lowbit
    layers.

    Parameters
    ----------
    model
        The nn.Module to convert, in place.
    config
        One config for every layer, or a dict {fnmatch pattern: config or None} over module
        names (the first matching pattern wins; None or no match keeps the layer float).
    filter_fn
        filter_fn(module, name) -> bool narrows the layers considered.
    embeddings, embedding_bits, embedding_group_size
        embeddings=True also replaces nn.Embedding layers by QuantizedEmbedding (8 or 4 bits,
        one scale per row or per embedding_group_size values; or 16: float16 rows).
    skip_slower, example_batch_size, example_inputs
        skip_slower=True times each layer, float and quantized, on this CPU at the rows it will
        see (from one run of `example_inputs` if given: a tuple passed positionally, a dict by
        keyword, anything else as the one argument; else `example_batch_size` rows) and keeps
        float where the quantized layer is slower.
    progress
        A tqdm bar (if tqdm is installed) for models with at least 16 layers; True/False forces
        it on/off.

    Returns
    -------
    ConversionSummary
        Print it for a table: the replaced layers; the skipped ones with the reason (odd
        in_features for 4-bit, in_features past the int8 depth limit, empty; a 4-bit group
        larger than in_features becomes in_features, noted); in `kept`, the other modules
        holding weight matrices that stay float (Conv, LSTM, EmbeddingBag, nn.Embedding without
        embeddings=True, ...) with the reason. If every candidate layer was skipped, a
        UserWarning also says why. Tied weights (two modules holding one Parameter, GPT-2's
        lm_head and wte) are untied: each converted module gets its own quantized copy, the
        summary notes it and counts the shared float weight once, and a UserWarning says so.

        Afterwards each lowbit layer knows its qualified name (its errors start with it), and
        the Hugging Face save methods (save_pretrained, push_to_hub, SentenceTransformer.save)
        of the transformers / sentence-transformers modules holding lowbit layers raise
        RuntimeError: use lowbit.save / lowbit.load, or quantize while loading with
        lowbit.hf.LowbitConfig, whose models save_pretrained saves.

    Raises
    ------
    TypeError
        model is not an nn.Module; config is not a lowbit config; a boolean argument is not a
        bool (progress may be None); a float weight is not float32.
    ValueError
        The model has no nn.Linear (or nn.Embedding) layers, or filter_fn rejects all;
        Int8StaticConfig (use prepare / convert); NaN / Inf weights.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"quantize_ takes an nn.Module, got {type(model).__name__}")
    skip_slower = check_bool(skip_slower, "skip_slower")
    embeddings = check_bool(embeddings, "embeddings")
    progress = None if progress is None else check_bool(progress, "progress")
    if isinstance(config, QuantConfig) and config.calibrated:
        raise ValueError(f"{type(config).__name__} needs calibration: prepare(model, config), run "
                         "representative data through the model, then convert(model)")
    linears = find(model, (nn.Linear,), filter_fn)
    convs = find(model, CONVS, filter_fn)
    embs = find(model, (nn.Embedding,), filter_fn) if embeddings else []
    if not linears and not embs and not convs:
        unfiltered = find(model, (nn.Linear,) + CONVS, None) + (
            find(model, (nn.Embedding,), None) if embeddings else [])
        raise _no_layers_error(model, filter_fn is not None and bool(unfiltered), embeddings)
    patterns = conv_patterns(model) if convs else {}
    fused: list[ConvPattern] = []
    rows: dict[str, int] = {}
    if skip_slower and example_inputs is not None:
        rows = _observed_rows(model, linears, example_inputs)
    parents = dict(named_modules_all(model))
    summary = ConversionSummary("quantize_")
    ties = tied_weights(model, linears + embs)
    weight_bytes = {name: m.weight.nbytes for name, m in linears + convs + embs}

    def build(name: str, module: nn.Module) -> Optional[nn.Module]:
        if isinstance(module, nn.Linear):
            return convert_linear(name, module, config, parents, summary, skip_slower,
                                  rows.get(name, example_batch_size))
        if isinstance(module, CONVS):
            return convert_conv(model, name, module, config, summary, patterns.get(name),
                                fused)
        return convert_embedding(name, module, embedding_bits, embedding_group_size, summary)

    order = {name: i for i, (name, _) in enumerate(named_modules_all(model))}
    targets = sorted(linears + convs + embs, key=lambda item: order.get(item[0], len(order)))
    swap_modules(model, targets, build, progress, "lowbit quantize_")   # in model order
    for pattern in fused:   # the folded BatchNorms and fused activations leave the model
        remove_fused(model, pattern)
    untied = note_ties(summary, ties, weight_bytes)
    if untied:
        warnings.warn(f"quantize_ untied {untied}, which shared one weight Parameter: each "
                      "converted module now holds its own quantized copy, and a module kept "
                      "float keeps the float weight (print the returned summary for the "
                      "notes)", UserWarning, stacklevel=2)
    summary.kept = kept_float(model, handled_ids(model, linears + convs + embs),
                              "an nn.Embedding: pass embeddings=True to quantize it"
                              if not embeddings else "an nn.Embedding that filter_fn did not "
                              "select")
    finish(model)
    if not summary.replaced:
        # the model had layers to convert, so a summary of 0 replaced is most likely a surprise
        # (an odd in_features at 4 bits, a pattern dict that matches nothing): say why
        warnings.warn(_nothing_replaced(model, summary), UserWarning, stacklevel=2)
    return summary


def note_ties(summary: ConversionSummary, ties: dict[str, list[str]],
              weight_bytes: dict[str, int]) -> str:
    """Notes, on each replaced layer whose weight Parameter another module held, that the tie
    is gone, and counts the shared float weight once in the summary's bytes (not at all where
    a float holder keeps it in memory). Returns a description of the untied pairs ('' if
    none)."""
    replaced = {r.name: r for r in summary.replaced}
    pairs = []
    seen: set[frozenset[str]] = set()
    for r in summary.replaced:
        others = sorted(set(ties.get(r.name, [])))
        if not others:
            continue
        floats = [o for o in others if o not in replaced]
        converted = [o for o in others if o in replaced]
        listed = ", ".join(repr(o) for o in others)
        if floats:
            note = (f"weight was tied to {listed}; untied: {', '.join(repr(o) for o in floats)} "
                    "keeps the float weight (still in memory), this layer its own quantized copy")
            r.bytes_before -= weight_bytes[r.name]
        else:
            first = min(summary.replaced.index(replaced[o]) for o in converted)
            note = (f"weight was tied to {listed}; untied: each holds its own quantized copy")
            if first < summary.replaced.index(r):
                r.bytes_before -= weight_bytes[r.name]   # the shared float weight counted once
        r.note = "; ".join(filter(None, [r.note, note]))
        group = frozenset([r.name, *others])
        if group not in seen:
            seen.add(group)
            pairs.append(" and ".join(repr(n) for n in sorted(group)))
    return "; ".join(pairs)


def _nothing_replaced(model: nn.Module, summary: ConversionSummary, shown: int = 4) -> str:
    by_reason: dict[str, list[str]] = {}
    for s in summary.skipped:
        by_reason.setdefault(s.reason, []).append(s.name)
    parts = []
    for reason, names in list(by_reason.items())[:shown]:
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        parts.append(f"{', '.join(repr(n) for n in names[:3])}{more}: {reason}")
    rest = len(by_reason) - shown
    return (f"quantize_ replaced no layer of {type(model).__name__}: all "
            f"{len(summary.skipped)} candidate layer(s) were skipped; " + "; ".join(parts)
            + (f"; and {rest} other reason(s) (print the returned summary)" if rest > 0 else ""))


def _dynamic_config(name: str, reason: Optional[str], config: ConfigSpec,
                    summary: ConversionSummary) -> Optional[QuantConfig]:
    """The config quantize_ applies to layer `name` (None: skipped, with `reason` or the
    config's own in `summary`); a static config is an error here (it needs prepare/convert)."""
    cfg, why = (None, reason) if reason else config_for(name, config)
    if cfg is None:
        summary.skipped.append(Skipped(name, why or "no config"))
        return None
    if cfg.calibrated:
        raise ValueError(f"layer {name!r}: {type(cfg).__name__} needs calibration; use prepare() "
                         "and convert()")
    return cfg


def convert_linear(name: str, module: nn.Linear, config: ConfigSpec,
                   parents: dict[str, nn.Module], summary: ConversionSummary,
                   skip_slower: bool, rows: int) -> Optional[QuantizedLinear]:
    """One nn.Linear's lowbit layer under `config` (None: kept, with the reason in `summary`);
    `parents` maps at least the module's parent name to the parent. quantize_ and lowbit.hf's
    quantize-while-loading both convert through it, so they give the same layers."""
    cfg = _dynamic_config(name, linear_skip_reason(name, module, parents), config, summary)
    if cfg is None:
        return None
    w, b = float_weight(module, name)
    try:
        plan = cfg.plan(module.out_features, module.in_features)
    except UnsupportedLayer as e:
        summary.skipped.append(Skipped(name, str(e)))
        return None
    new = QuantizedLinear(NumpyQuantizedLinear.from_config(w, b, cfg), cfg.describe(), name,
                          dtype=module.weight.dtype)
    note = plan.note
    if skip_slower:
        t_float, t_quant = compare(module, new, rows, module.in_features)
        timing = f"{t_quant * 1e6:.1f} us vs float {t_float * 1e6:.1f} us at {rows} rows"
        if t_quant > t_float:
            summary.skipped.append(Skipped(name, f"slower quantized: {timing}"))
            return None
        note = "; ".join(filter(None, [note, timing]))
    before = module.weight.nbytes + (0 if module.bias is None else module.bias.nbytes)
    if new.nbytes >= before:
        note = "; ".join(filter(None, [note, "not smaller: the packed layout pads "
                                             "out_features to a multiple of 64"]))
    summary.replaced.append(Replaced(name, "linear", (module.out_features, module.in_features),
                                     cfg.describe(), before, new.nbytes, note))
    return new


def convert_conv(model: nn.Module, name: str, module: nn.Module, config: ConfigSpec,
                 summary: ConversionSummary, pattern: Optional[ConvPattern],
                 fused: list[ConvPattern]) -> Optional[QuantizedConv2d]:
    """One nn.Conv1d / nn.Conv2d's lowbit layer under `config` (None: kept, with the reason in
    `summary`), with the BatchNorm of its pattern folded in and its activation fused; the
    pattern goes to `fused` once the conv is converted (its modules leave the model then)."""
    cfg = _dynamic_config(name, conv_skip_reason(module), config, summary)
    if cfg is None:
        return None
    w, b = float_weight(module, name)
    try:
        cfg.conv_plan(int(w.shape[0]), int(np.prod(w.shape[1:])))
    except UnsupportedLayer as e:
        summary.skipped.append(Skipped(name, str(e)))
        return None
    pattern = pattern or ConvPattern(name)
    if pattern.norm is not None:
        w, b = fold_norm(w, b, model.get_submodule(pattern.norm))
    cls = quantized_conv_class(module)
    layer = cls.numpy_type.from_config(w, b, cfg, activation=pattern.activation,
                                       **conv_geometry(module))
    new = cls(layer, cfg.describe_conv(), name, dtype=module.weight.dtype,
              channels_last=like_channels_last(module.weight))
    before = module.weight.nbytes + (0 if module.bias is None else module.bias.nbytes)
    summary.replaced.append(Replaced(name, "conv", tuple(module.weight.shape), cfg.describe_conv(),
                                     before, new.nbytes, pattern.note(model)))
    fused.append(pattern)
    return new


def convert_embedding(name: str, module: nn.Embedding, bits: int, group_size: Optional[int],
                      summary: ConversionSummary) -> Optional[QuantizedEmbedding]:
    """One nn.Embedding's QuantizedEmbedding (None: kept, with the reason in `summary`)."""
    reason = unsupported_embedding_reason(module)
    if reason is None and bits == 4 and module.embedding_dim % 2:
        reason = f"embedding_dim={module.embedding_dim} is odd; 4-bit rows need an even one"
    if reason:
        summary.skipped.append(Skipped(name, reason))
        return None
    new = QuantizedEmbedding.from_float(module, bits, group_size)
    new.lowbit_name = name
    desc = ("float16 rows" if bits == 16 else
            f"int{bits} rows" + (f", groups of {group_size}" if group_size else ", per-row scales"))
    summary.replaced.append(Replaced(name, "embedding",
                                     (module.num_embeddings, module.embedding_dim), desc,
                                     module.weight.nbytes, new.nbytes))
    return new
