"""LowbitHfQuantizer: the transformers quantizer behind LowbitConfig (registered as "lowbit").

Two ways through from_pretrained:

- A float checkpoint and a LowbitConfig (quantize while loading). Before the weights load, the
  quantizer lists the nn.Linear (and, with embeddings=True, nn.Embedding) modules to convert
  (not in modules_to_not_convert, weight not tied). transformers hands each one's weight to
  QuantizeOnLoad instead of setting it; the op puts it in the module and, once the module's
  bias is there too (transformers loads a module's tensors in name order, bias first), replaces
  the module by its lowbit layer through lowbit.torch's own per-layer conversion, so the float
  copy of one layer at a time is alive. A module whose bias comes later is converted after
  loading.
- A folder save_pretrained wrote from a lowbit model (config.json's quantization_config is
  "lowbit"). Nothing is quantized: lowbit.hf._prequantized swaps the checkpoint's lowbit
  layers for slots that take its tensors as they are, then builds the layers from them.
"""
from __future__ import annotations

import logging
import warnings
from typing import Any, Optional

import torch
from torch import nn
from transformers.core_model_loading import ConversionOps
from transformers.quantizers import HfQuantizer
from transformers.quantizers.quantizers_utils import should_convert_module

from ..quant.config import QuantConfig
from ..quant.summary import ConversionSummary, Replaced, Skipped
from ..torch._modules import handled_ids, kept_float, set_submodule
from ..torch.quantize import convert_embedding, convert_linear
from ._prequantized import LowbitSlot, checkpoint_layers, install_slots
from .config import LowbitConfig

logger = logging.getLogger("lowbit.hf")


class QuantizeOnLoad(ConversionOps):
    """transformers' operation on the weight of a module LowbitConfig converts: puts the
    weight tensor transformers read in the module and hands the module to the quantizer (which
    replaces it by its lowbit layer); returns the tensors it does not take, for transformers
    to set."""

    def __init__(self, quantizer: "LowbitHfQuantizer") -> None:
        self.quantizer = quantizer

    def convert(self, input_dict: dict[str, Any], source_patterns: Any = None,
                target_patterns: Any = None, *, model: Optional[nn.Module] = None,
                full_layer_name: Optional[str] = None, missing_keys: Optional[set[str]] = None,
                **kwargs: Any) -> dict[str, Any]:
        assert model is not None
        passed = {}
        for key, value in input_dict.items():   # full names: the weights of converted modules
            value = value[0] if isinstance(value, list) else value
            if not self.quantizer.param_needs_quantization(model, key):
                passed[key] = value   # (from a converter that makes several tensors) as it is
                continue
            name, _, tensor_name = key.rpartition(".")
            module = model.get_submodule(name)
            have = getattr(module, tensor_name)
            if tuple(value.shape) != tuple(have.shape):
                raise ValueError(f"lowbit: {key} is {tuple(value.shape)} in the checkpoint and "
                                 f"{tuple(have.shape)} in the model")
            weight = nn.Parameter(value, requires_grad=False)
            weight._is_hf_initialized = True   # loaded: transformers must not initialise it
            module._parameters[tensor_name] = weight
            if missing_keys is not None:
                missing_keys.discard(key)
            self.quantizer._weight_loaded(model, name)
        return passed


class LowbitHfQuantizer(HfQuantizer):
    """The quantizer transformers makes for a LowbitConfig (see lowbit.hf). After loading,
    `summary` is the ConversionSummary of what it replaced, skipped and kept float.

    Parameters
    ----------
    quantization_config
        The LowbitConfig.
    kwargs
        transformers' own (pre_quantized: whether the checkpoint is already lowbit's).

    Raises
    ------
    TypeError
        quantization_config is not a LowbitConfig.
    """

    requires_calibration = False

    def __init__(self, quantization_config: LowbitConfig, **kwargs: Any) -> None:
        if not isinstance(quantization_config, LowbitConfig):
            raise TypeError("LowbitHfQuantizer takes a lowbit.hf.LowbitConfig, got "
                            f"{type(quantization_config).__name__}")
        super().__init__(quantization_config, **kwargs)
        self.summary = ConversionSummary("from_pretrained (pre-quantized)" if self.pre_quantized
                                         else "from_pretrained")
        self._spec: Any = None
        self._targets: list[str] = []      # the modules to convert while loading
        self._target_set: set[str] = set()
        self._waiting: list[str] = []      # weights loaded before their bias
        self._slots: dict[str, LowbitSlot] = {}

    # ---- transformers' hooks --------------------------------------------------------------
    def validate_environment(self, *args: Any, **kwargs: Any) -> None:
        """Refuses what lowbit cannot do: devices other than the CPU, and (quantizing while
        loading) a config that needs calibration.

        Parameters
        ----------
        args, kwargs
            transformers' (device_map, weights_only).

        Raises
        ------
        ValueError
            A device_map with a device other than the CPU; format "int8_static" for a float
            checkpoint.
        """
        device_map = kwargs.get("device_map")
        if isinstance(device_map, dict):
            devices = {str(d) for d in device_map.values()}
        elif device_map is None:
            devices = set()
        else:
            devices = {str(device_map)}
        other = sorted(d for d in devices if d != "cpu")
        if other:
            raise ValueError(f"lowbit's layers run on the CPU; device_map places modules on "
                             f"{', '.join(other)}: load without a device_map (or with "
                             "device_map='cpu')")
        if not self.pre_quantized:
            spec = self.quantization_config.quant_config()
            configs = spec.values() if isinstance(spec, dict) else [spec]
            calibrated = sorted({c.name for c in configs
                                 if isinstance(c, QuantConfig) and c.calibrated})
            if calibrated:
                raise ValueError(
                    f"lowbit: format {', '.join(map(repr, calibrated))} needs calibration "
                    "(frozen activation scales), which loading cannot do: convert with "
                    "lowbit.torch.prepare, run data through the model, then "
                    "lowbit.torch.convert; or pick a dynamic or weight-only format")
            self._spec = spec

    def update_dtype(self, dtype: Any) -> Any:
        """lowbit's layers compute in float32, so the model loads in float32.

        Parameters
        ----------
        dtype
            The dtype from_pretrained would use.

        Returns
        -------
        torch.dtype
            torch.float32.

        Raises
        ------
        None
            It only logs when it overrides another dtype.
        """
        if dtype not in (None, "auto", torch.float32):
            logger.warning("lowbit: loading in float32 instead of %s (lowbit's layers compute "
                           "in float32)", dtype)
        return torch.float32

    def _process_model_before_weight_loading(self, model: nn.Module,
                                             checkpoint_files: Optional[list[str]] = None,
                                             **kwargs: Any) -> nn.Module:
        if self.pre_quantized:
            self._slots = install_slots(model, checkpoint_layers(checkpoint_files))
            return model
        config: LowbitConfig = self.quantization_config
        skip = self.get_modules_to_not_convert(model, config.modules_to_not_convert,
                                               getattr(model, "_keep_in_fp32_modules", None))
        tied = {key.removesuffix(".weight")
                for pair in getattr(model, "all_tied_weights_keys", {}).items() for key in pair}
        kinds: tuple[type, ...] = (nn.Linear, nn.Embedding) if config.embeddings else (nn.Linear,)
        for name, module in model.named_modules():
            if not name or not isinstance(module, kinds):
                continue
            if not should_convert_module(name, skip):
                self.summary.skipped.append(Skipped(name, "in modules_to_not_convert" + (
                    " (transformers' defaults: tied weights, the output embeddings, the last "
                    "module)" if config.modules_to_not_convert is None else "")))
            elif name in tied:
                self.summary.skipped.append(Skipped(
                    name, "its weight is tied to another module's, which transformers re-ties "
                          "after loading (kept float)"))
            else:
                self._targets.append(name)
        self._target_set = set(self._targets)
        return model

    def param_needs_quantization(self, model: nn.Module, param_name: str, **kwargs: Any) -> bool:
        """Whether transformers hands this checkpoint tensor to QuantizeOnLoad: the weight of
        a module being converted while loading.

        Parameters
        ----------
        model
            The model being loaded.
        param_name
            A parameter's qualified name.
        kwargs
            Unused.

        Returns
        -------
        bool

        Raises
        ------
        None
            It looks the name up.
        """
        name, _, tensor = param_name.rpartition(".")
        return not self.pre_quantized and tensor == "weight" and name in self._target_set

    def get_quantize_ops(self) -> QuantizeOnLoad:
        """The operation transformers runs on each weight param_needs_quantization selects.

        Returns
        -------
        QuantizeOnLoad

        Raises
        ------
        None
            It makes the operation.
        """
        return QuantizeOnLoad(self)

    def _process_model_after_weight_loading(self, model: nn.Module, **kwargs: Any) -> nn.Module:
        if self.pre_quantized:
            for name, slot in self._slots.items():
                new = slot.build()
                new._is_hf_initialized = True
                set_submodule(model, name, new)
                rows, cols = slot.meta["shape"]
                has_bias = isinstance(getattr(new, "bias", None), torch.Tensor)
                float_bytes = 4 * (rows * cols + (rows if has_bias else 0))
                self.summary.replaced.append(Replaced(
                    name, slot.meta["kind"], (rows, cols),
                    getattr(new, "config", "") or f"int{slot.meta['bits']} rows (loaded)",
                    float_bytes, int(new.nbytes), "from the checkpoint"))
            self._slots = {}
            return model
        for name in self._waiting:
            self._convert(model, name)
        self._waiting = []
        candidates = [(n, m) for n, m in model.named_modules()
                      if n in self._target_set or n in self.summary.skipped_names]
        self.summary.kept = kept_float(model, handled_ids(model, candidates),
                                       "an nn.Embedding: LowbitConfig(embeddings=True) "
                                       "quantizes it" if not self.quantization_config.embeddings
                                       else "an nn.Embedding that was not selected")
        if self._targets and not self.summary.replaced:
            warnings.warn(f"lowbit: from_pretrained replaced no layer of {type(model).__name__}"
                          f": all {len(self.summary.skipped)} candidate layer(s) were skipped "
                          "(see model.hf_quantizer.summary)", UserWarning, stacklevel=2)
        return model

    def is_serializable(self, *args: Any, **kwargs: Any) -> bool:
        """save_pretrained writes lowbit models (their quantized tensors and this config).

        Parameters
        ----------
        args, kwargs
            Unused.

        Returns
        -------
        bool
            True.

        Raises
        ------
        None
            A constant.
        """
        return True

    @property
    def is_trainable(self) -> bool:
        return False

    # ---- conversion -----------------------------------------------------------------------
    def _weight_loaded(self, model: nn.Module, name: str) -> None:
        """The weight of the module `name` is in place: convert it now if its bias is too
        (or it has none), else after loading."""
        bias = getattr(model.get_submodule(name), "bias", None)
        if isinstance(bias, torch.Tensor) and bias.is_meta:
            self._waiting.append(name)
        else:
            self._convert(model, name)

    def _convert(self, model: nn.Module, name: str) -> None:
        module = model.get_submodule(name)
        parent = name.rpartition(".")[0]
        config: LowbitConfig = self.quantization_config
        if self._spec is None:
            self._spec = config.quant_config()
        if isinstance(module, nn.Linear):
            new: Optional[nn.Module] = convert_linear(
                name, module, self._spec, {parent: model.get_submodule(parent)}, self.summary,
                False, 1)
        else:
            new = convert_embedding(name, module, config.embedding_bits,
                                    config.embedding_group_size, self.summary)
        if new is not None:
            new._is_hf_initialized = True
            set_submodule(model, name, new)
