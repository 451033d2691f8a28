"""`quantize_weights`: converts a plain dict of NumPy weights (no PyTorch needed)."""
from __future__ import annotations

import fnmatch
from typing import Any, Mapping, Optional, Union

import numpy as np

from .config import Int8StaticConfig, QuantConfig, check_config
from .nn import QuantizedLinear

ConfigSpec = Union[QuantConfig, Mapping[str, Optional[QuantConfig]]]


def config_for(name: str, spec: ConfigSpec) -> tuple[Optional[QuantConfig], str]:
    """The config a layer gets: `spec` itself, or, for a dict of fnmatch patterns, the value of
    the first pattern (in the dict's order) that matches the name (None: keep float). The
    second value is the reason when there is no config."""
    if not isinstance(spec, Mapping):
        return check_config(spec), ""
    for pattern, cfg in spec.items():
        if fnmatch.fnmatchcase(name, pattern):
            if cfg is None:
                return None, f"pattern {pattern!r} maps it to None (kept float)"
            return check_config(cfg, f"config for pattern {pattern!r}"), ""
    return None, "no pattern matched"


def quantize_weights(weights: Mapping[str, Any], config: ConfigSpec,
                     biases: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Returns a new dict: every 2-D float32 array becomes a `lowbit.nn.QuantizedLinear`
    (weights are (out_features, in_features); `biases[name]`, when given, becomes its bias);
    other values (1-D arrays, integer arrays, anything else) are kept as they are, and so are
    2-D arrays that a pattern dict maps to None or does not match.

    A weight the config cannot take (e.g. an odd in_features for 4-bit) raises ValueError
    naming it. Int8StaticConfig is refused: each layer needs its own calibration (use
    QuantizedLinear.from_config(..., input_qparams=...) or lowbit.torch.prepare/convert)."""
    out: dict[str, Any] = {}
    biases = {} if biases is None else biases
    unknown = set(biases) - set(weights)
    if unknown:
        raise ValueError(f"biases for names not in weights: {sorted(unknown)}")
    for name, value in weights.items():
        if not (isinstance(value, np.ndarray) and value.ndim == 2 and value.dtype.kind == "f"):
            out[name] = value
            continue
        cfg, _ = config_for(name, config)
        if cfg is None:
            out[name] = value
            continue
        if isinstance(cfg, Int8StaticConfig):
            raise ValueError(f"{name!r}: Int8StaticConfig needs per-layer calibration; use "
                             "QuantizedLinear.from_config(w, b, config, input_qparams=...)")
        try:
            out[name] = QuantizedLinear.from_config(value, biases.get(name), cfg)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{name!r}: {e}") from e
    return out
