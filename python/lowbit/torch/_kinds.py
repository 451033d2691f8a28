"""The module classes lowbit.torch defines, by kind: each class registers itself where it is
defined (`@lowbit_layer`, `@prepared_layer`), so the helpers that must recognise them
(lowbit.torch._modules, _hf) sit below the layers and never import them."""
from __future__ import annotations

from typing import TypeVar

T = TypeVar("T", bound=type)

LOWBIT_LAYERS: list[type] = []    # hold packed weights: QuantizedLinear, QuantizedEmbedding
PREPARED_LAYERS: list[type] = []  # prepare / prepare_qat's, until convert: ObservedLinear, FakeQuantLinear


def lowbit_layer(cls: T) -> T:
    LOWBIT_LAYERS.append(cls)
    return cls


def prepared_layer(cls: T) -> T:
    PREPARED_LAYERS.append(cls)
    return cls


def lowbit_types() -> tuple[type, ...]:
    return tuple(LOWBIT_LAYERS)


def prepared_types() -> tuple[type, ...]:
    return tuple(PREPARED_LAYERS)
