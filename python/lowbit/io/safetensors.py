"""The safetensors file format, written and read with NumPy only, and an atomic file write.

Layout: 8-byte little-endian header length n, then n bytes of JSON (padded with spaces to a
multiple of 8), then the data buffer. The JSON maps each tensor name to
{"dtype", "shape", "data_offsets": [begin, end]} (offsets into the data buffer) and holds an
optional "__metadata__" dict of strings. Tensors are little-endian, C order, and tile the
buffer with no holes and no overlaps.
"""
from __future__ import annotations

import json
import math
import os
import stat
import tempfile
from typing import IO, Callable, Mapping

import numpy as np

DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),   # raw bits; NumPy has no bfloat16
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
MAX_HEADER_BYTES = 100 * 2**20


def dtype_code(a: np.ndarray) -> str:
    for code, dt in DTYPES.items():
        if code != "BF16" and a.dtype.kind == dt.kind and a.dtype.itemsize == dt.itemsize:
            return code
    raise TypeError(f"safetensors cannot store dtype {a.dtype}")


def write(f: IO[bytes], tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str],
          codes: Mapping[str, str]) -> None:
    """codes: an explicit dtype code per tensor where the array's own dtype is not the stored
    one (BF16 held as uint16 bits); the others are inferred."""
    if "__metadata__" in tensors:
        raise ValueError("'__metadata__' is reserved and cannot name a tensor")
    # Widest items first: with an 8-aligned buffer start, every tensor is then aligned.
    order = sorted(tensors, key=lambda k: (-tensors[k].dtype.itemsize, k))
    header: dict[str, object] = {"__metadata__": dict(metadata)}
    offset = 0
    for name in order:
        a = tensors[name]
        size = a.size * a.dtype.itemsize
        header[name] = {"dtype": codes.get(name) or dtype_code(a), "shape": list(a.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    f.write(len(raw).to_bytes(8, "little"))
    f.write(raw)
    for name in order:
        a = tensors[name]
        a = np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"), copy=False))
        if a.size:
            f.write(a.data)


def read(buf: bytes) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, str]]:
    """Parses a whole file's bytes: (tensors as read-only arrays, metadata, dtype codes).
    Every structural problem raises ValueError saying what is wrong."""
    if len(buf) < 8:
        raise ValueError(f"truncated: {len(buf)} bytes, fewer than the 8-byte header length")
    n = int.from_bytes(buf[:8], "little")
    if n > MAX_HEADER_BYTES or 8 + n > len(buf):
        raise ValueError(f"header length {n} does not fit the file's {len(buf)} bytes "
                         "(truncated or not a safetensors file)")
    header = parse_json(bytes(buf[8:8 + n]), "header")
    if not isinstance(header, dict):
        raise ValueError("corrupted header: not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise ValueError("corrupted header: __metadata__ must map strings to strings")
    data = memoryview(buf)[8 + n:]
    tensors: dict[str, np.ndarray] = {}
    codes: dict[str, str] = {}
    spans = []
    for name, info in header.items():
        a, begin, end = _tensor(name, info, data)
        tensors[name], codes[name] = a, info["dtype"]
        spans.append((begin, end, name))
    spans.sort()
    pos = 0
    for begin, end, name in spans:
        if begin != pos:
            raise ValueError(f"corrupted header: tensor {name!r} starts at {begin}, expected "
                             f"{pos} (tensors must tile the data buffer)")
        pos = end
    if pos != len(data):
        raise ValueError(f"data buffer has {len(data)} bytes but the tensors cover {pos} "
                         "(truncated or trailing garbage)")
    return tensors, metadata, codes


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice")
        out[key] = value
    return out


def parse_json(raw: bytes, what: str) -> object:
    """JSON from a file, where every failure is a ValueError saying what is wrong: invalid
    UTF-8 or JSON, a key given twice (two readers could take different values), nesting deep
    enough to exhaust the parser's recursion."""
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise ValueError(f"corrupted {what}: JSON nested too deeply") from None
    except ValueError as e:   # UnicodeDecodeError, JSONDecodeError, a duplicate key
        raise ValueError(f"corrupted {what}: not valid JSON ({e})") from None


def is_int(value: object) -> bool:
    """A JSON integer (bool is a subclass of int in Python, but `true` is not a number)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _tensor(name: str, info: object, data: memoryview) -> tuple[np.ndarray, int, int]:
    # Every field's type is checked before the field is used: a fuzzed header can put any JSON
    # value anywhere (a list as the dtype made `code not in DTYPES` raise TypeError).
    if not isinstance(info, dict):
        raise ValueError(f"corrupted header: entry {name!r} is not an object")
    code, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(code, str) or code not in DTYPES:
        raise ValueError(f"tensor {name!r}: unknown dtype {code!r}")
    if not (isinstance(shape, list) and all(is_int(d) and d >= 0 for d in shape)):
        raise ValueError(f"tensor {name!r}: bad shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2
            and all(is_int(o) for o in offsets) and 0 <= offsets[0] <= offsets[1]):
        raise ValueError(f"tensor {name!r}: bad data_offsets {offsets!r}")
    begin, end = offsets
    dt = DTYPES[code]
    if end - begin != math.prod(shape) * dt.itemsize:
        raise ValueError(f"tensor {name!r}: {end - begin} bytes for shape {shape} of {code}")
    if end > len(data):
        raise ValueError(f"truncated: tensor {name!r} ends at byte {end} of a {len(data)}-byte "
                         "data buffer")
    try:
        a = np.frombuffer(data[begin:end], dtype=dt).reshape(shape)
    except ValueError as e:   # an empty tensor whose other dimensions NumPy cannot represent
        raise ValueError(f"tensor {name!r}: shape {shape} cannot be represented ({e})") from None
    return a, begin, end


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str, write_fn: Callable[[IO[bytes]], None]) -> None:
    """Writes through a temporary file in the target's directory, then os.replace: readers see
    the old file or the complete new one, never a partial one; on any error the temporary file
    is removed and an existing file is left as it was."""
    target = os.path.abspath(os.fspath(path))
    if os.path.isdir(target):
        raise IsADirectoryError(f"{path!r} is a directory")
    directory = os.path.dirname(target)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        mode = (stat.S_IMODE(os.stat(target).st_mode) if os.path.exists(target)
                else 0o666 & ~_umask())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable; not possible on every filesystem
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
