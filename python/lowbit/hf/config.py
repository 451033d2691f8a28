"""LowbitConfig: the quantization_config transformers' from_pretrained takes to quantize a model
with lowbit while loading it, and that save_pretrained writes to config.json."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Optional, Union

from transformers.utils.quantization_config import QuantizationConfigMixin

from ..quant.config import CONFIGS_BY_NAME, ConfigSpec, QuantConfig
from ..torch._hf import QUANT_METHOD

# The names LowbitConfig(format=...) takes: every lowbit config's `name`.
FORMATS: tuple[str, ...] = tuple(CONFIGS_BY_NAME)
# The config fields a LowbitConfig (or a layer_formats entry) may set; None: the config's default.
OPTIONS = ("group_size", "symmetric", "clip_search")
# What a layer_formats value may be: a format name, {"format": name, **options}, or None.
LayerFormat = Union[str, Mapping[str, Any], None]


def make_config(fmt: Any, options: Mapping[str, Any], where: str) -> QuantConfig:
    """The lowbit config named `fmt` with the given options (None values: the config's
    defaults), or ValueError (TypeError for wrong types) saying what `where` got wrong."""
    if not isinstance(fmt, str):
        raise TypeError(f"{where}: format must be a str (one of {', '.join(FORMATS)}), got "
                        f"{type(fmt).__name__}")
    cls = CONFIGS_BY_NAME.get(fmt)
    if cls is None:
        raise ValueError(f"{where}: unknown format {fmt!r}; lowbit's formats are "
                         f"{', '.join(FORMATS)}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {', '.join(unknown)}; the options are "
                         f"{', '.join(OPTIONS)}")
    fields = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in options.items() if v is not None}
    refused = sorted(set(given) - fields)
    if refused:
        takes = [o for o in OPTIONS if o in fields]
        raise ValueError(f"{where}: format {fmt!r} takes no {', '.join(refused)} (its options: "
                         f"{', '.join(takes) or 'none'})")
    return cls(**given)


def _layer_config(pattern: Any, value: LayerFormat) -> Optional[QuantConfig]:
    where = f"layer_formats[{pattern!r}]"
    if not isinstance(pattern, str):
        raise TypeError(f"layer_formats keys must be str patterns, got {type(pattern).__name__}")
    if value is None:
        return None
    if isinstance(value, str):
        return make_config(value, {}, where)
    if isinstance(value, Mapping):
        if "format" not in value:
            raise ValueError(f"{where}: a dict entry needs a 'format' key (one of "
                             f"{', '.join(FORMATS)})")
        return make_config(value["format"], {k: v for k, v in value.items() if k != "format"},
                           where)
    raise TypeError(f"{where} must be a format name, a dict with 'format' and options, or None; "
                    f"got {type(value).__name__}")


class LowbitConfig(QuantizationConfigMixin):
    """A Hugging Face quantization_config for lowbit: `from_pretrained(path,
    quantization_config=LowbitConfig(...))` replaces the model's nn.Linear layers (and, with
    embeddings=True, its nn.Embedding layers) by lowbit layers while the weights load, one
    layer at a time, as `lowbit.torch.quantize_` would (the same layers, bit for bit);
    `save_pretrained` writes the quantized tensors (safetensors) and this config (config.json),
    and `from_pretrained` of that folder, with lowbit.hf imported, rebuilds the lowbit layers
    from the saved tensors (no float weights, no quantizing again). The loaded model's
    `model.hf_quantizer.summary` is the conversion summary.

    Parameters
    ----------
    format
        The lowbit config every converted layer gets, by name: "int8_dynamic" (default,
        Int8DynamicConfig), "int8_weight_only", "int4_weight_only", "int4_dynamic" (W4A8),
        "float16_weight_only", "bfloat16_weight_only" (16-bit float weights) or
        "int8_static" (which needs calibration: prepare / convert, so not for quantizing
        while loading).
    group_size, symmetric, clip_search
        The config's options (None: its default); group_size only for the 4-bit formats.
    modules_to_not_convert
        Module names to keep float, as transformers' other quantizers take them (a name
        matches itself and the modules under it, a regex, or a suffix). None (default):
        transformers' defaults (tied weights, the output embeddings, the last module; none
        for an encoder such as BERT); [] converts every layer.
    layer_formats
        {fnmatch pattern over module names: format name, {"format": name, **options}, or None
        (keep float)}, the first matching pattern winning; layers that match none get
        `format`.
    embeddings, embedding_bits, embedding_group_size
        embeddings=True also quantizes nn.Embedding layers (8 or 4 bits, one scale per row
        or per embedding_group_size values), as quantize_(..., embeddings=True).
    quant_method
        "lowbit" (what config.json records; any other value is an error).

    Raises
    ------
    ValueError
        An unknown format (the message names the known ones), an option the format does not
        take (group_size for an 8-bit format), a bad option value (see the lowbit config), or
        a quant_method other than "lowbit".
    TypeError
        A format that is not a str, an option of the wrong type, a layer_formats value that is
        not a name, dict or None, or modules_to_not_convert that is not a list of str.
    """

    def __init__(self, format: str = "int8_dynamic", group_size: Optional[int] = None,
                 symmetric: Optional[bool] = None, clip_search: Optional[bool] = None,
                 modules_to_not_convert: Optional[list[str]] = None,
                 layer_formats: Optional[dict[str, LayerFormat]] = None,
                 embeddings: bool = False, embedding_bits: int = 8,
                 embedding_group_size: Optional[int] = None,
                 quant_method: str = QUANT_METHOD) -> None:
        if quant_method != QUANT_METHOD:
            raise ValueError(f"LowbitConfig is quant_method {QUANT_METHOD!r}, got {quant_method!r}")
        self.quant_method = quant_method
        self.format = format
        self.group_size = group_size
        self.symmetric = symmetric
        self.clip_search = clip_search
        if modules_to_not_convert is not None and (
                isinstance(modules_to_not_convert, str)
                or not all(isinstance(m, str) for m in modules_to_not_convert)):
            raise TypeError("modules_to_not_convert must be a list of module names (str) or None")
        self.modules_to_not_convert = (None if modules_to_not_convert is None
                                       else list(modules_to_not_convert))
        if layer_formats is not None and not isinstance(layer_formats, Mapping):
            raise TypeError("layer_formats must be a dict {pattern: format} or None, got "
                            f"{type(layer_formats).__name__}")
        self.layer_formats = None if layer_formats is None else dict(layer_formats)
        if not isinstance(embeddings, bool):
            raise TypeError(f"embeddings must be a bool, got {type(embeddings).__name__}")
        if embedding_bits not in (4, 8) or isinstance(embedding_bits, bool):
            raise ValueError(f"embedding_bits must be 8 or 4, got {embedding_bits!r}")
        self.embeddings = embeddings
        self.embedding_bits = embedding_bits
        self.embedding_group_size = embedding_group_size
        self.quant_config()   # every check now, not in the middle of a load

    def base_config(self) -> QuantConfig:
        """The lowbit config `format` and the options name.

        Returns
        -------
        QuantConfig
            E.g. Int8DynamicConfig() for format="int8_dynamic".

        Raises
        ------
        ValueError, TypeError
            As the class says.
        """
        return make_config(self.format, {k: getattr(self, k) for k in OPTIONS}, "LowbitConfig")

    def quant_config(self) -> ConfigSpec:
        """What the conversion applies, as lowbit.torch.quantize_ takes it: the base config, or
        with layer_formats, a dict of fnmatch patterns to configs (None: keep float) ending
        with "*": the base config.

        Returns
        -------
        QuantConfig or dict

        Raises
        ------
        ValueError, TypeError
            As the class says.
        """
        base = self.base_config()
        if not self.layer_formats:
            return base
        spec: dict[str, Optional[QuantConfig]] = {
            pattern: _layer_config(pattern, value) for pattern, value in self.layer_formats.items()}
        spec.setdefault("*", base)
        return spec

    def to_dict(self) -> dict[str, Any]:
        """The fields config.json records (and LowbitConfig(**fields) takes back).

        Returns
        -------
        dict

        Raises
        ------
        None
            It reads the config's fields.
        """
        return {"quant_method": self.quant_method, "format": self.format,
                "group_size": self.group_size, "symmetric": self.symmetric,
                "clip_search": self.clip_search,
                "modules_to_not_convert": (None if self.modules_to_not_convert is None
                                           else list(self.modules_to_not_convert)),
                "layer_formats": (None if self.layer_formats is None
                                  else {k: (dict(v) if isinstance(v, Mapping) else v)
                                        for k, v in self.layer_formats.items()}),
                "embeddings": self.embeddings, "embedding_bits": self.embedding_bits,
                "embedding_group_size": self.embedding_group_size}
