"""QuantizedEmbedding: a drop-in nn.Module for nn.Embedding with int8 or int4 rows."""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from ..nn.embedding import QuantizedEmbedding as NumpyQuantizedEmbedding
from ._guards import WeightInfo, layer_label, refuse_script
from ._ops import EMBEDDING_OP, FLOATS, eager, embedding_run
from ._onnx import embedding_graph, exporting as onnx_exporting
from .layers import (FORMAT_KEY, decode_format, device_check, encode_format, format_mismatch,
                     keep_layout, state_array, with_layer_name)
from ._kinds import lowbit_layer


def unsupported_embedding_reason(emb: nn.Embedding) -> Optional[str]:
    """Why an nn.Embedding cannot become a QuantizedEmbedding (None if it can)."""
    if emb.max_norm is not None:
        return "max_norm renormalizes rows in place on lookup; a quantized table cannot"
    if emb.weight.dtype not in FLOATS:
        return f"weight dtype is {emb.weight.dtype}, not float32, bfloat16 or float16"
    if emb.weight.device.type != "cpu":
        return f"weight is on {emb.weight.device}, not the CPU"
    return None


@lowbit_layer
class QuantizedEmbedding(nn.Module):
    """Same call as nn.Embedding: integer indices of any shape -> (..., embedding_dim) in the
    layer's `dtype` (float32 unless made from, or converted to, half precision).

    The quantized table and its scales are buffers (shared with the NumPy
    `lowbit.nn.QuantizedEmbedding` that does the lookup), so parameters() + buffers() count
    them, and state_dict() holds them (the tensors lowbit.save writes). The lookup gathers the
    rows and dequantizes them (the torch custom operator `torch.ops.lowbit.embedding`, which
    torch.compile / torch.export record as one operator); no gradients.

    Made by `from_float`, `lowbit.torch.quantize_(..., embeddings=True)` or `lowbit.load`; the
    constructor wraps an already built NumPy table.

    Parameters
    ----------
    table
        The lowbit.nn.QuantizedEmbedding that does the lookups (its arrays become the
        `qweight` and `scale` buffers, sharing memory).
    padding_idx
        Kept from the nn.Embedding, as nn.Embedding's attribute (lookups do not treat it
        specially: its row was quantized like any other).
    name
        The module's qualified name in its model, for errors (None: not in a model yet).
    dtype
        What lookups return: the float model's dtype (float32, bfloat16 or float16; the
        lookup dequantizes in float32 and rounds once to it). `model.to(dtype)` changes it;
        moving to another device raises RuntimeError.

    Raises
    ------
    None
        The NumPy table was checked when it was made.
    """

    qweight: torch.Tensor
    scale: torch.Tensor

    def __init__(self, table: NumpyQuantizedEmbedding, padding_idx: Optional[int] = None,
                 name: Optional[str] = None, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.table = table
        self.num_embeddings = table.num_embeddings
        self.embedding_dim = table.embedding_dim
        self.padding_idx = padding_idx
        self.lowbit_name = name   # the qualified name in the model, for errors
        self.dtype = dtype        # what lookups return (the float model's dtype)
        self.register_buffer("qweight", torch.from_numpy(table.data))
        self.register_buffer("scale", torch.from_numpy(table.scale))

    @property
    def weight(self) -> WeightInfo:
        """Not a tensor: a WeightInfo with the shape (num_embeddings, embedding_dim), dtype
        (float32, what lookups return) and device (cpu) code written for nn.Embedding reads;
        `.weight.dequantize()` gives a float32 copy of the table."""
        return WeightInfo(self._label, (self.num_embeddings, self.embedding_dim),
                          self.dequantized_weight, self.dtype)

    @weight.setter
    def weight(self, value: Any) -> None:
        raise AttributeError(f"{self._label()}: .weight cannot be assigned: the table is "
                             "quantized (tied weights cannot be re-tied after conversion)")

    def dequantized_weight(self) -> torch.Tensor:
        """A float32 (num_embeddings, embedding_dim) copy of the table lookups read.

        Returns
        -------
        torch.Tensor
            float32 (num_embeddings, embedding_dim), a new tensor.

        Raises
        ------
        None
            The table was checked when it was made.
        """
        return torch.from_numpy(self.table(np.arange(self.num_embeddings)))

    def __prepare_scriptable__(self) -> nn.Module:
        raise refuse_script(self._label())

    @classmethod
    def from_float(cls, embedding: nn.Embedding, bits: int = 8,
                   group_size: Optional[int] = None) -> "QuantizedEmbedding":
        """bits=8 or 4, one symmetric scale per row (or per `group_size` values of a row); or
        bits=16, float16 values.

        Parameters
        ----------
        embedding
            An nn.Embedding on the CPU (float32, bfloat16 or float16 table, widened to float32
            exactly), without max_norm (its table is copied).
        bits
            8 (default), 4 (an even embedding_dim) or 16 (float16 values).
        group_size
            None (one scale per row) or values per scale (see
            lowbit.nn.QuantizedEmbedding.from_float).

        Returns
        -------
        QuantizedEmbedding
            With the embedding's padding_idx.

        Raises
        ------
        TypeError
            embedding is not an nn.Embedding; group_size is not an int or None.
        ValueError
            max_norm is set, the weight is not float32 or not on the CPU (the message says
            which); bits other than 8, 4 or 16; an odd embedding_dim for 4 bits; group_size <= 0;
            NaN/Inf in the table.
        """
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(f"from_float takes an nn.Embedding, got {type(embedding).__name__}")
        reason = unsupported_embedding_reason(embedding)
        if reason:
            raise ValueError(f"cannot quantize this embedding: {reason}")
        w = embedding.weight.detach().to(torch.float32).contiguous().numpy()
        return cls(NumpyQuantizedEmbedding.from_float(w, bits, group_size), embedding.padding_idx,
                   dtype=embedding.weight.dtype)

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
        """The dequantized rows of `indices`, as nn.Embedding returns them.

        Parameters
        ----------
        indices
            A CPU integer tensor (int64, int32, int16, int8 or uint8) of any shape, each in
            [0, num_embeddings).

        Returns
        -------
        torch.Tensor
            (*indices.shape, embedding_dim) in the layer's dtype.

        Raises
        ------
        TypeError
            indices is not a tensor, or not of an integer dtype (messages start with the
            layer's name).
        ValueError
            indices are not on the CPU.
        IndexError
            An index outside [0, num_embeddings) (negative ones included).
        """
        if not isinstance(indices, torch.Tensor):
            raise TypeError(f"{self._label()} takes a torch.Tensor, got "
                            f"{type(indices).__name__}")
        if indices.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            raise TypeError(f"{self._label()}: embedding indices must be integers, got "
                            f"{indices.dtype}")
        if indices.device.type != "cpu":
            raise ValueError(f"{self._label()} runs on the CPU; got indices on "
                             f"{indices.device}")
        args = (self.qweight, self.scale, self.bits, self.embedding_dim,
                self.table.group_size or 0)
        if not eager(indices):
            # traced: the operator, or for torch.onnx.export standard ONNX operators
            out = (embedding_graph(self, indices) if onnx_exporting()
                   else EMBEDDING_OP(indices, *args))
        else:
            try:
                out = embedding_run(indices.detach(), *args)
            except (TypeError, ValueError, IndexError) as e:
                raise with_layer_name(e, self._label()) from None
        return out if self.dtype == torch.float32 else out.to(self.dtype)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True
               ) -> "QuantizedEmbedding":
        dtype = device_check(self, fn, self._label)
        if dtype is not None:
            self.dtype = dtype
        return super()._apply(keep_layout(fn), recurse)

    def _format(self) -> dict[str, Any]:
        return {"format": "lowbit", "kind": "embedding", "bits": self.bits,
                "group_size": self.table.group_size,
                "shape": [self.num_embeddings, self.embedding_dim]}

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str,
                            keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        # bits and group size: two group sizes with the same number of groups per row give
        # tensors of the same shapes
        destination[prefix + FORMAT_KEY] = encode_format(self._format())

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              local_metadata: dict[str, Any], strict: bool,
                              missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        # nn.Module would copy into the buffers casting any dtype (an int64 or float table would
        # wrap or truncate silently) and take any scale: check the table as lowbit.load does
        # first, so a bad state changes nothing
        keys = (prefix + "qweight", prefix + "scale")
        format_key = prefix + FORMAT_KEY
        fmt = state_dict.get(format_key)
        if fmt is None and strict and any(k in state_dict for k in keys):
            missing_keys.append(format_key)
        state_dict = {k: v for k, v in state_dict.items() if k != format_key}
        if all(k in state_dict for k in keys):
            try:
                NumpyQuantizedEmbedding(state_array(state_dict[keys[0]], keys[0]),
                                       state_array(state_dict[keys[1]], keys[1]), self.bits,
                                       self.embedding_dim, self.table.group_size)
            except (TypeError, ValueError) as e:
                error_msgs.append(f"{self._label()} cannot take {keys[0]} / {keys[1]}: {e}")
                return
        if fmt is not None:
            # after the table check: a table of the wrong shape says so in its own terms; this
            # catches what the shapes cannot tell (a group size with the same number of groups)
            try:
                differ = format_mismatch(self._format(), decode_format(fmt, format_key))
            except ValueError as e:
                differ = [str(e)]
            if differ:
                error_msgs.append(f"format mismatch for {format_key}: the checkpoint's table "
                                  f"was made with another config than {self._label()} ("
                                  + "; ".join(differ) + ")")
                return
        errors = len(error_msgs)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if len(error_msgs) == errors:
            # the lookup reads the NumPy table: rebuild it on the buffers, which a load with
            # assign=True replaces rather than fills
            self.table = NumpyQuantizedEmbedding(self.qweight.numpy(), self.scale.numpy(),
                                                self.bits, self.embedding_dim,
                                                self.table.group_size)

    def _label(self) -> str:
        return layer_label("QuantizedEmbedding", getattr(self, "lowbit_name", None),
                           self.extra_repr())

    def extra_repr(self) -> str:
        g = f", group_size={self.table.group_size}" if self.table.group_size else ""
        return f"{self.num_embeddings}, {self.embedding_dim}, bits={self.bits}{g}"
