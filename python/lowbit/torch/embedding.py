"""QuantizedEmbedding: a drop-in nn.Module for nn.Embedding with int8 or int4 rows."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from .. import nn as lnn


def unsupported_embedding_reason(emb: nn.Embedding) -> Optional[str]:
    """Why an nn.Embedding cannot become a QuantizedEmbedding (None if it can)."""
    if emb.max_norm is not None:
        return "max_norm renormalizes rows in place on lookup; a quantized table cannot"
    if emb.weight.dtype != torch.float32:
        return f"weight dtype is {emb.weight.dtype}, not float32"
    if emb.weight.device.type != "cpu":
        return f"weight is on {emb.weight.device}, not the CPU"
    return None


class QuantizedEmbedding(nn.Module):
    """Same call as nn.Embedding: integer indices of any shape -> (..., embedding_dim) float32.

    The quantized table and its scales are buffers (shared with the NumPy
    `lowbit.nn.QuantizedEmbedding` that does the lookup), so parameters() + buffers() count
    them. The lookup gathers the rows in NumPy and dequantizes them; no gradients."""

    def __init__(self, table: lnn.QuantizedEmbedding, padding_idx: Optional[int] = None) -> None:
        super().__init__()
        self.table = table
        self.num_embeddings = table.num_embeddings
        self.embedding_dim = table.embedding_dim
        self.padding_idx = padding_idx
        self.register_buffer("qweight", torch.from_numpy(table.data))
        self.register_buffer("scale", torch.from_numpy(table.scale))

    @classmethod
    def from_float(cls, embedding: nn.Embedding, bits: int = 8,
                   group_size: Optional[int] = None) -> "QuantizedEmbedding":
        """bits=8 or 4, one symmetric scale per row (or per `group_size` values of a row)."""
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(f"from_float takes an nn.Embedding, got {type(embedding).__name__}")
        reason = unsupported_embedding_reason(embedding)
        if reason:
            raise ValueError(f"cannot quantize this embedding: {reason}")
        w = embedding.weight.detach().contiguous().numpy()
        return cls(lnn.QuantizedEmbedding.from_float(w, bits, group_size), embedding.padding_idx)

    @property
    def bits(self) -> int:
        return self.table.bits

    @property
    def nbytes(self) -> int:
        return self.table.nbytes

    @property
    def hidden_nbytes(self) -> int:
        return 0   # everything is in the buffers

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        if not isinstance(indices, torch.Tensor):
            raise TypeError(f"QuantizedEmbedding takes a torch.Tensor, got {type(indices).__name__}")
        if indices.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            raise TypeError(f"embedding indices must be integers, got {indices.dtype}")
        if indices.device.type != "cpu":
            raise ValueError(f"QuantizedEmbedding runs on the CPU; got indices on {indices.device}")
        out = self.table(np.asarray(indices.detach().contiguous().numpy()))
        return torch.from_numpy(out)

    def extra_repr(self) -> str:
        g = f", group_size={self.table.group_size}" if self.table.group_size else ""
        return f"{self.num_embeddings}, {self.embedding_dim}, bits={self.bits}{g}"
