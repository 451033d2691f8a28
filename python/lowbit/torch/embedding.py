"""QuantizedEmbedding: a drop-in nn.Module for nn.Embedding with int8 or int4 rows."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from .. import nn as lnn
from .layers import state_array


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
    them, and state_dict() holds them (the tensors lowbit.save writes). The lookup gathers the
    rows in NumPy and dequantizes them; no gradients."""

    qweight: torch.Tensor
    scale: torch.Tensor

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

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              local_metadata: dict[str, Any], strict: bool,
                              missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        # nn.Module would copy into the buffers casting any dtype (an int64 or float table would
        # wrap or truncate silently) and take any scale: check the table as lowbit.load does
        # first, so a bad state changes nothing
        keys = (prefix + "qweight", prefix + "scale")
        if all(k in state_dict for k in keys):
            try:
                lnn.QuantizedEmbedding(state_array(state_dict[keys[0]], keys[0]),
                                       state_array(state_dict[keys[1]], keys[1]), self.bits,
                                       self.embedding_dim, self.table.group_size)
            except (TypeError, ValueError) as e:
                error_msgs.append(f"lowbit {self._label()} cannot take {keys[0]} / {keys[1]}: "
                                  f"{e}")
                return
        errors = len(error_msgs)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if len(error_msgs) == errors:
            # the lookup reads the NumPy table: rebuild it on the buffers, which a load with
            # assign=True replaces rather than fills
            self.table = lnn.QuantizedEmbedding(self.qweight.numpy(), self.scale.numpy(),
                                                self.bits, self.embedding_dim,
                                                self.table.group_size)

    def _label(self) -> str:
        return f"QuantizedEmbedding({self.extra_repr()})"

    def extra_repr(self) -> str:
        g = f", group_size={self.table.group_size}" if self.table.group_size else ""
        return f"{self.num_embeddings}, {self.embedding_dim}, bits={self.bits}{g}"
