"""`quantize_weights`: converts a plain dict of NumPy weights (no PyTorch needed)."""
from __future__ import annotations

import fnmatch
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from ..quant.plan import UnsupportedLayer
from ..quant.config import ConfigSpec, QuantConfig, check_config, config_for
from .embedding import QuantizedEmbedding
from .models import Embedding, Linear
from .linear import QuantizedLinear
from ..quant.summary import ConversionSummary, Replaced, Skipped

EmbeddingSpec = Union[bool, str, Sequence[str]]

# A 2-D array looks the same whether it is a linear weight or a lookup table; these names (the
# layer name, lowercased) are taken for tables: nn.Embedding modules are usually called so
# (embeddings.word_embeddings, embed_tokens, emb, GPT-2's wte / wpe).
EMBEDDING_PATTERNS = ("*embed*", "emb*", "*.emb*", "wte", "*.wte", "wpe", "*.wpe")


class QuantizedWeights(dict):  # type: ignore[type-arg]
    """What quantize_weights returns: a plain dict (name -> lowbit layer, or the value kept as
    it was), plus `summary`, a ConversionSummary of what was replaced and what was kept, and
    why (print it for a table).

    Parameters
    ----------
    items
        The dict's entries.
    summary
        The conversion's ConversionSummary.

    Raises
    ------
    None
        As dict's constructor.
    """

    def __init__(self, items: Mapping[str, Any], summary: ConversionSummary) -> None:
        super().__init__(items)
        self.summary = summary


def layer_name(key: str) -> str:
    """The layer a state_dict-style key belongs to: 'enc.fc1.weight' -> 'enc.fc1'; any other
    key names its layer itself."""
    return key[:-len(".weight")] if key.endswith(".weight") else key


def _not_a_weight(value: Any) -> Optional[str]:
    if not isinstance(value, np.ndarray):
        return f"not an array ({type(value).__name__})"
    if value.ndim != 2:
        return f"{value.ndim}-D array (only 2-D weights are converted)"
    if value.dtype.kind != "f":
        return f"{value.dtype} array (not floating point)"
    return None


def _table_rule(embeddings: EmbeddingSpec) -> tuple[tuple[str, ...], bool]:
    """(patterns naming embedding tables, whether tables are converted)."""
    if isinstance(embeddings, bool):
        return EMBEDDING_PATTERNS, embeddings
    if isinstance(embeddings, str):
        return (embeddings,), True
    if isinstance(embeddings, Sequence) and all(isinstance(p, str) for p in embeddings):
        return tuple(embeddings), True
    raise TypeError("embeddings must be a bool, an fnmatch pattern or a sequence of patterns, "
                    f"got {type(embeddings).__name__}")


def _is_table(name: str, patterns: tuple[str, ...]) -> Optional[str]:
    """The pattern that makes `name` an embedding table, if any."""
    probe = name.lower() if patterns is EMBEDDING_PATTERNS else name
    return next((p for p in patterns if fnmatch.fnmatchcase(probe, p)), None)


def _bias_for(key: str, value: Any, weights: Mapping[str, Any], biases: Mapping[str, Any]
              ) -> tuple[Optional[str], Any]:
    """(the key of the bias taken from `weights`, or None; the bias array or None). A float
    Linear brings its own; a '<name>.weight' takes '<name>.bias'; `biases[key]` names one
    explicitly."""
    if isinstance(value, Linear):
        own, sibling = value.bias, None
    else:
        own = None
        sibling = layer_name(key) + ".bias" if key.endswith(".weight") else None
        if sibling is not None and sibling not in weights:
            sibling = None
    if key in biases:
        if sibling is not None or own is not None:
            where = repr(sibling) + " in weights" if sibling else "the Linear's own"
            raise ValueError(f"{key!r} has a bias in biases= and {where}: give one")
        return None, biases[key]
    return sibling, (own if sibling is None else weights[sibling])


def _classify(key: str, value: Any, patterns: tuple[str, ...]
              ) -> tuple[str, Optional[np.ndarray], Optional[str], str]:
    """(layer name, the float matrix or None, why it is not a weight, the table pattern or "")
    of one dict entry. lowbit.nn.Linear / Embedding say what they are; an array is a table if
    its name says so."""
    if isinstance(value, Linear):
        return key, value.weight, None, ""
    if isinstance(value, Embedding):
        if patterns is EMBEDDING_PATTERNS or _is_table(key, patterns):
            return key, value.weight, None, "lowbit.nn.Embedding"
        return key, None, "a lowbit.nn.Embedding that no embeddings= pattern names", ""
    why = _not_a_weight(value)
    if why:
        return key, None, why, ""
    name = layer_name(key)
    pattern = _is_table(name, patterns)
    return name, value, None, "" if pattern is None else f"name matches {pattern!r}"


def _size_note(note: str, before: int, after: int) -> str:
    if after < before:
        return note
    return "; ".join(filter(None, [note, "not smaller: the packed layout pads out_features to "
                                         "a multiple of 64"]))


def quantize_weights(weights: Mapping[str, Any], config: ConfigSpec,
                     biases: Optional[Mapping[str, Any]] = None, *,
                     embeddings: EmbeddingSpec = False, embedding_bits: int = 8,
                     embedding_group_size: Optional[int] = None) -> QuantizedWeights:
    """Returns a new dict in which the 2-D float32 weight matrices (out_features, in_features)
    become `lowbit.nn.QuantizedLinear` layers; it also carries `.summary` (a ConversionSummary:
    each replaced layer, each value kept and why).

    Names: a state_dict-style '<name>.weight' becomes the layer '<name>' and takes
    '<name>.bias' as its bias (both keys leave the dict; lowbit.save then writes what saving the
    converted PyTorch module writes). Any other key keeps its name, its bias given by
    `biases[key]`. config: one config, or {fnmatch pattern: config or None} matched against the
    layer name (the first match wins; None or no match keeps the weight float).

    Values may also be float layers (the layers of a lowbit.nn.Model): a lowbit.nn.Linear
    becomes a QuantizedLinear with its own bias, a lowbit.nn.Embedding is a table (below);
    both keep their key, so `model.with_layers(quantize_weights(model.layers, config))` is the
    quantized model.

    Kept as they are, with a reason in the summary: values that are not 2-D floating-point
    arrays (biases of float layers, norms, integer tables, anything else), weights a pattern
    keeps float, and shapes the config cannot take (odd in_features for 4-bit, past the int8
    depth limit, empty), exactly as lowbit.torch.quantize_ skips them; a 4-bit group larger
    than in_features becomes in_features (noted).

    Embedding tables (a lowbit.nn.Embedding, or an array whose layer name matches
    EMBEDDING_PATTERNS, e.g. 'emb.weight', 'embeddings.word_embeddings.weight') are kept
    float unless embeddings=True, which makes them QuantizedEmbedding (embedding_bits 8, 4 or 16,
    one scale per row or per embedding_group_size values). embeddings='pattern' or a list of patterns names the tables
    instead (and converts them).

    Parameters
    ----------
    weights
        A mapping of names to NumPy arrays, lowbit.nn.Linear / Embedding layers or anything
        else (kept).
    config
        One lowbit config, or a dict {fnmatch pattern: config or None} (see above).
    biases
        None, or {key of weights: bias} for weights whose bias is not '<name>.bias'.
    embeddings
        False (default: tables kept float), True (tables found by EMBEDDING_PATTERNS are
        converted), or an fnmatch pattern or sequence of patterns naming the tables.
    embedding_bits
        8 (default) or 4, for the converted tables.
    embedding_group_size
        None (one scale per row) or values per scale of a converted table.

    Returns
    -------
    QuantizedWeights
        A dict of the new entries in the input's order, with `.summary`.

    Raises
    ------
    TypeError
        Naming the weight: a float weight that is not float32. Also: config (or a pattern's
        config) is not a lowbit config; embeddings is not a bool, a pattern or a sequence of
        patterns.
    ValueError
        Naming the weight: NaN/Inf, a bias given twice or of the wrong shape, a name two
        entries would take, and Int8StaticConfig (each layer needs its own calibration:
        QuantizedLinear.from_config(..., input_qparams=...) or lowbit.torch.prepare/convert).
        Also: biases for names not in weights; embedding_bits other than 8, 4 or 16.
    """
    biases = {} if biases is None else biases
    unknown = set(biases) - set(weights)
    if unknown:
        raise ValueError(f"biases for names not in weights: {sorted(unknown)}")
    if embedding_bits not in (4, 8, 16) or isinstance(embedding_bits, bool):
        raise ValueError(f"embedding_bits must be 8, 4 or 16, got {embedding_bits!r}")
    table_patterns, convert_tables = _table_rule(embeddings)
    summary = ConversionSummary("quantize_weights")
    converted: dict[str, tuple[str, Any]] = {}   # input key -> (output name, lowbit layer)
    taken_biases: set[str] = set()
    for key, value in weights.items():
        name, matrix, why, table = _classify(key, value, table_patterns)
        if matrix is None:
            summary.skipped.append(Skipped(key, why or "not a weight"))
            continue
        if table:
            if not convert_tables:
                summary.skipped.append(Skipped(key, f"an embedding table ({table}): pass "
                                                    "embeddings=True to quantize it"))
                continue
            new_table = _convert_table(key, name, matrix, embedding_bits, embedding_group_size,
                                       summary)
            if new_table is not None:
                converted[key] = (name, new_table)
            continue
        cfg, why = config_for(name, config)
        if cfg is None:
            summary.skipped.append(Skipped(key, why))
            continue
        if cfg.calibrated:
            raise ValueError(f"{key!r}: {type(cfg).__name__} needs per-layer calibration; use "
                             "QuantizedLinear.from_config(w, b, config, input_qparams=...)")
        try:
            plan = cfg.plan(matrix.shape[0], matrix.shape[1])
        except UnsupportedLayer as e:
            summary.skipped.append(Skipped(key, str(e)))
            continue
        bias_key, bias = _bias_for(key, value, weights, biases)
        try:
            layer = QuantizedLinear.from_config(matrix, bias, cfg)
        except (TypeError, ValueError) as e:
            what = f"{key!r}" + (f" (with {bias_key!r})" if bias_key else "")
            raise type(e)(f"{what}: {e}") from e
        if bias_key is not None:
            taken_biases.add(bias_key)
        before = matrix.nbytes + (0 if bias is None else np.asarray(bias).nbytes)
        summary.replaced.append(Replaced(name, "linear", matrix.shape, cfg.describe(), before,
                                         layer.nbytes, _size_note(plan.note, before,
                                                                  layer.nbytes)))
        converted[key] = (name, layer)
    # a bias that went into its layer was listed as a 1-D array to keep before its weight came
    summary.skipped = [s for s in summary.skipped if s.name not in taken_biases]
    out: dict[str, Any] = {}
    for key, value in weights.items():
        if key in taken_biases:
            continue
        name, new = converted.get(key, (key, value))
        if name in out or (name != key and name in weights):
            raise ValueError(f"{key!r} becomes the layer {name!r}, a name the dict already "
                             "holds")
        out[name] = new
    return QuantizedWeights(out, summary)


def _convert_table(key: str, name: str, table: np.ndarray, bits: int,
                   group_size: Optional[int], summary: ConversionSummary
                   ) -> Optional[QuantizedEmbedding]:
    rows, dim = table.shape
    reason = None
    if rows == 0 or dim == 0:
        reason = f"empty table ({rows} x {dim})"
    elif bits == 4 and dim % 2:
        reason = f"embedding_dim={dim} is odd; 4-bit rows need an even one"
    if reason:
        summary.skipped.append(Skipped(key, reason))
        return None
    try:
        new = QuantizedEmbedding.from_float(table, bits, group_size)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{key!r}: {e}") from e
    desc = f"int{bits} rows" + (f", groups of {group_size}" if group_size else ", per-row scales")
    summary.replaced.append(Replaced(name, "embedding", (rows, dim), desc, table.nbytes,
                                     new.nbytes))
    return new
