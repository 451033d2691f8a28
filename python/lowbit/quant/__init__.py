"""Quantization choices, below the layers that use them: configs (config), observers and their
histograms (observers, histogram), which shapes a config can convert (plan), and the
conversion summaries (summary)."""
from __future__ import annotations

from . import observers
from .config import (CONFIG_TYPES, CONFIGS_BY_NAME, BFloat16WeightOnlyConfig, ConfigSpec,
                     Float16WeightOnlyConfig, Int4DynamicConfig,
                     Int4WeightOnlyConfig, Int8DynamicConfig, Int8StaticConfig,
                     Int8WeightOnlyConfig, QuantConfig, check_config, config_for)
from .summary import ConversionSummary, Kept, Replaced, Skipped

__all__ = ["observers", "CONFIG_TYPES", "CONFIGS_BY_NAME", "BFloat16WeightOnlyConfig",
           "ConfigSpec", "Float16WeightOnlyConfig", "Int4DynamicConfig",
           "Int4WeightOnlyConfig", "Int8DynamicConfig", "Int8StaticConfig", "Int8WeightOnlyConfig",
           "QuantConfig", "check_config", "config_for", "ConversionSummary", "Kept", "Replaced",
           "Skipped"]
