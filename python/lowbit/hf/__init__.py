"""lowbit.hf: lowbit as a Hugging Face transformers quantizer (needs transformers; lowbit and
lowbit.torch never import it).

Importing lowbit.hf registers the quantization_config "lowbit" (LowbitConfig) and its quantizer
with transformers' out-of-tree hooks (`register_quantization_config`, `register_quantizer`):

- `AutoModel.from_pretrained(path, quantization_config=LowbitConfig(format="int8_dynamic"))`
  quantizes the model's nn.Linear layers while loading (as lowbit.torch.quantize_ would);
  sentence-transformers: `SentenceTransformer(path, model_kwargs={"quantization_config": ...})`.
- `model.save_pretrained(folder)` (and `SentenceTransformer.save`) writes the quantized tensors
  (safetensors) and the LowbitConfig (config.json).
- `from_pretrained(folder)` of such a folder (lowbit.hf imported first) rebuilds the lowbit
  layers from the saved tensors: no float weights, no quantizing again.

docs/hf.md has the details.
"""
from __future__ import annotations

try:
    import transformers as _transformers
except ImportError as e:  # pragma: no cover - exercised only without transformers
    raise ImportError("lowbit.hf needs Hugging Face transformers: pip install transformers") from e
if int(_transformers.__version__.split(".")[0]) < 5:  # pragma: no cover - old transformers
    raise ImportError(f"lowbit.hf needs transformers 5 (its weight-loading hooks), found "
                      f"{_transformers.__version__}: pip install -U transformers")

from ._quantizer import LowbitHfQuantizer
from .config import FORMATS, LowbitConfig
from ..torch._hf import QUANT_METHOD


def _register() -> None:
    """Registers LowbitConfig and LowbitHfQuantizer as "lowbit" with transformers, once per
    process (a re-imported lowbit.hf replaces the classes it registered before; a "lowbit"
    that another package registered makes transformers raise)."""
    from transformers.quantizers import auto, register_quantization_config, register_quantizer

    for table, cls, register in ((auto.AUTO_QUANTIZATION_CONFIG_MAPPING, LowbitConfig,
                                  register_quantization_config),
                                 (auto.AUTO_QUANTIZER_MAPPING, LowbitHfQuantizer,
                                  register_quantizer)):
        known = table.get(QUANT_METHOD)
        if known is cls:
            continue
        if known is not None and known.__module__.startswith("lowbit.hf"):
            del table[QUANT_METHOD]
        register(QUANT_METHOD)(cls)


_register()

__all__ = ["LowbitConfig", "FORMATS"]
