"""QuantizedEmbedding (NumPy): an embedding table stored as int8 or int4 rows with float32
scales per row (or per group of a row), gathered and dequantized on lookup."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .._core.checks import float_array, group_for_axis
from .._core.halfs import round_to_half
from .._core.nibbles import pack_nibbles, unpack_nibbles
from ..qtensor import quantize


def check_indices(indices: Any, num_embeddings: int) -> np.ndarray:
    """Lookup indices as an integer array, each in [0, num_embeddings) (no negative indexing:
    a table lookup with -1 is a bug, not "the last row")."""
    idx = np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= num_embeddings):
        raise IndexError(f"embedding index out of range [0, {num_embeddings}): "
                         f"got values in [{idx.min()}, {idx.max()}]")
    return idx


class QuantizedEmbedding:
    """A (num_embeddings, embedding_dim) table. bits=8: int8 values, symmetric
    (scale = max|row| / 127); bits=4: int4 values two per byte (scale = max|row| / 7);
    bits=16: float16 values (the float32 table rounded once, nearest even) with scales of 1.
    `scale` has shape (num_embeddings, groups): one group per row unless group_size is set.
    Lookup: rows = float32(q[idx]) * scale[idx] (dequantize_linear's arithmetic, zero point 0).

    Usually made by `from_float` (or `lowbit.quantize_weights(..., embeddings=True)`); the
    constructor takes an already quantized table (as `lowbit.load` does).

    Parameters
    ----------
    data
        bits=8: int8 (num_embeddings, embedding_dim); bits=4: uint8 (num_embeddings,
        embedding_dim // 2), two values q + 8 per byte, the even index in the low nibble;
        bits=16: float16 (num_embeddings, embedding_dim), finite.
    scale
        float32 (num_embeddings, groups), finite and > 0.
    bits
        8, 4 or 16.
    embedding_dim
        Values per row (even for 4 bits).
    group_size
        None (one scale per row) or values per scale (>= 1; the last group may be shorter).

    Raises
    ------
    ValueError
        bits other than 8, 4 or 16; an odd embedding_dim for 4 bits; group_size < 1; data or
        scale of another dtype or shape; scales that are not finite and > 0; a float16 table
        with NaN/Inf.
    """

    def __init__(self, data: np.ndarray, scale: np.ndarray, bits: int, embedding_dim: int,
                 group_size: Optional[int] = None) -> None:
        if bits not in (4, 8, 16):
            raise ValueError(f"bits must be 8, 4 or 16, got {bits!r}")
        if bits == 4 and embedding_dim % 2:
            raise ValueError(f"4-bit rows need an even embedding_dim, got {embedding_dim}")
        if group_size is not None and int(group_size) < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        storage_dim = embedding_dim // 2 if bits == 4 else embedding_dim
        expected = {8: np.int8, 4: np.uint8, 16: np.float16}[bits]
        if data.ndim != 2 or data.dtype != expected or data.shape[1] != storage_dim:
            raise ValueError(f"a {bits}-bit table must be {np.dtype(expected).name} with shape "
                             f"(rows, {storage_dim}), got {data.dtype} {data.shape}")
        g = embedding_dim if group_size is None else int(group_size)
        groups = -(-embedding_dim // g) if embedding_dim else 1
        if scale.shape != (data.shape[0], groups) or scale.dtype != np.float32:
            raise ValueError(f"scale must be float32 with shape ({data.shape[0]}, {groups}), "
                             f"got {scale.dtype} {scale.shape}")
        if scale.size and not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ValueError("embedding scales must be finite and > 0")
        if bits == 16 and data.size and not np.all(np.isfinite(data)):
            raise ValueError("a float16 table must hold finite values")
        self.data = data
        self.scale = scale
        self.bits = bits
        self.embedding_dim = embedding_dim
        self.group_size = group_size

    @classmethod
    def from_float(cls, weight: Any, bits: int = 8, group_size: Optional[int] = None
                   ) -> "QuantizedEmbedding":
        """Quantizes a float32 table, symmetric per row (or per group of a row).

        Parameters
        ----------
        weight
            float32 (num_embeddings, embedding_dim).
        bits
            8 (int8, default), 4 (int4, two per byte) or 16 (float16 values, rounded to
            nearest even, with scales of 1: 2x smaller than float32).
        group_size
            None (one scale per row) or values per scale, a positive int; larger than
            embedding_dim: one group per row. Must be None for bits=16.

        Returns
        -------
        QuantizedEmbedding

        Raises
        ------
        TypeError
            weight is not float32 data; group_size is not an int or None.
        ValueError
            weight is not 2-D or has no columns; bits other than 8, 4 or 16; an odd
            embedding_dim for 4 bits; group_size <= 0, or any for 16 bits; NaN/Inf in weight, or
            a value beyond float16's range for 16 bits.
        """
        w = float_array(weight, "weight")
        if w.ndim != 2:
            raise ValueError(f"an embedding table is 2-D (rows, dim), got shape {w.shape}")
        if isinstance(bits, bool) or bits not in (4, 8, 16):
            raise ValueError(f"bits must be 8, 4 or 16, got {bits!r}")
        dim = w.shape[1]
        if dim == 0:
            raise ValueError("embedding_dim must be > 0")
        if bits == 4 and dim % 2:
            raise ValueError(f"4-bit rows need an even embedding_dim, got {dim}")
        if group_size is not None and (isinstance(group_size, bool)
                                       or not isinstance(group_size, (int, np.integer))):
            raise TypeError(f"group_size must be an int or None, got {type(group_size).__name__}")
        if group_size is not None and group_size <= 0:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        if bits == 16:
            if group_size is not None:
                raise ValueError("a float16 table takes no group_size (its values need no scale)")
            # the weights' float16 rule (lowbit/_core/halfs.py): nearest even, Inf refused
            data16 = round_to_half(w, "float16").view(np.float16)
            return cls(data16, np.ones((w.shape[0], 1), np.float32), 16, dim, None)
        # a group longer than the row is one group per row, as everywhere (group_for_axis)
        group_size = None if group_size is None else group_for_axis(int(group_size), dim)
        g = dim if group_size is None else group_size
        qt = quantize(w, "int8" if bits == 8 else "int4", symmetric=True, axis=1, group_size=g)
        data = qt.data if bits == 8 else pack_nibbles((qt.data.astype(np.int16) + 8)
                                                      .astype(np.uint8))
        return cls(np.ascontiguousarray(data), np.ascontiguousarray(qt.scale, np.float32), bits,
                   dim, group_size)

    @property
    def num_embeddings(self) -> int:
        return int(self.data.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes + self.scale.nbytes)

    def values(self, rows: np.ndarray) -> np.ndarray:
        """The stored values of the given table rows (int8 one per element, or float16 for a
        16-bit table).

        Parameters
        ----------
        rows
            Row indices (any NumPy index of the first axis: unchecked here, as `__call__`
            checks them).

        Returns
        -------
        numpy.ndarray
            int8 (or float16) (..., embedding_dim).

        Raises
        ------
        IndexError
            An index outside the table.
        """
        if self.bits in (8, 16):
            return self.data[rows]
        return (unpack_nibbles(self.data[rows]).astype(np.int8) - np.int8(8)).astype(np.int8)

    def __call__(self, indices: Any) -> np.ndarray:
        """The dequantized rows of `indices`.

        Parameters
        ----------
        indices
            Integer indices of any shape, each in [0, num_embeddings) (no negative indexing).

        Returns
        -------
        numpy.ndarray
            float32 (*indices.shape, embedding_dim).

        Raises
        ------
        TypeError
            indices are not integers.
        IndexError
            An index outside [0, num_embeddings).
        """
        idx = check_indices(indices, self.num_embeddings)
        q = self.values(idx).astype(np.float32)
        s = self.scale[idx]
        if s.shape[-1] == 1:
            q *= s
        else:
            g = self.group_size or self.embedding_dim
            q *= np.repeat(s, g, axis=-1)[..., :self.embedding_dim]
        return q

    def dequantize(self) -> np.ndarray:
        """The whole table, dequantized as lookups return it.

        Returns
        -------
        numpy.ndarray
            float32 (num_embeddings, embedding_dim).

        Raises
        ------
        None
            The table was checked when it was made.
        """
        return self(np.arange(self.num_embeddings))

    def __repr__(self) -> str:
        g = f", group_size={self.group_size}" if self.group_size else ""
        return (f"QuantizedEmbedding({self.num_embeddings}, {self.embedding_dim}, "
                f"bits={self.bits}{g})")
