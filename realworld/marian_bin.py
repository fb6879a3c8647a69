"""Marian's binary model format (`*.bin`, format version 1): a reader and a writer.

Written by hand because no library on PyPI reads it (Marian itself is C++; `.npz` models load with numpy,
`.bin` ones do not). The layout, all little-endian:

    uint64 version (= 1)         uint64 n (number of items)
    n x Header {uint64 name_length, uint64 type, uint64 shape_length, uint64 data_length}
    n x name (name_length bytes, NUL-terminated)
    n x shape (shape_length x int32)
    uint64 pad, then pad zero bytes: the data starts on a 256-byte boundary (Marian always adds
        at least one byte: pad = ((pos + 8) // 256 + 1) * 256 - pos - 8, pos = bytes written so far)
    n x data (data_length bytes each, back to back)

Item types are Marian's `Type` codes (class | size): 0x1xx signed, 0x2xx unsigned, 0x4xx float, and
0x4101 / 0x4102 intgemm8 / intgemm16: quantised values followed by one float32 multiplier
(float value = q / multiplier). Float and intgemm items are zero-padded to a multiple of 256 bytes;
int8 items (the embedded `special:model.yml`) are not. The *meaning* of an intgemm matrix's byte
order (bergamot stores `*_W*` matrices transposed, `Wemb` as is) belongs to the model, not the format:
see `convert_marian.py`.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from pathlib import Path

import numpy as np

from .files import atomic_file

BINARY_FORMAT_VERSION = 1
ALIGN = 256

INT8, INT16, INT32, INT64 = 0x101, 0x102, 0x104, 0x108
UINT8, UINT16, UINT32, UINT64 = 0x201, 0x202, 0x204, 0x208
FLOAT16, FLOAT32, FLOAT64 = 0x402, 0x404, 0x408
INTGEMM8, INTGEMM16 = 0x4101, 0x4102

# type code -> (name, numpy dtype of the stored values)
TYPES = {
    INT8: ("int8", np.int8), INT16: ("int16", np.int16), INT32: ("int32", np.int32), INT64: ("int64", np.int64),
    UINT8: ("uint8", np.uint8), UINT16: ("uint16", np.uint16), UINT32: ("uint32", np.uint32),
    UINT64: ("uint64", np.uint64),
    FLOAT16: ("float16", np.float16), FLOAT32: ("float32", np.float32), FLOAT64: ("float64", np.float64),
    INTGEMM8: ("intgemm8", np.int8), INTGEMM16: ("intgemm16", np.int16),
}
INTGEMM_TYPES = (INTGEMM8, INTGEMM16)
_HEADER = struct.Struct("<QQQQ")


class MarianFormatError(ValueError):
    """A file that is not (or not a whole) Marian binary model; the message names the file."""


def type_name(code: int) -> str:
    return TYPES[code][0] if code in TYPES else f"0x{code:x}"


@dataclasses.dataclass
class Item:
    """One named tensor. `values` holds the stored numbers (quantised ints for intgemm types) reshaped to
    `shape`, except intgemm items, whose values stay flat (their byte order is the model's business)."""

    name: str
    type: int
    shape: tuple[int, ...]
    values: np.ndarray
    multiplier: float | None = None  # intgemm only
    # the bytes after the values (and multiplier) as read: Marian pads with zeros, but some converters leave
    # stale buffer bytes there; keeping them makes read -> write byte-identical. None: Marian's zero padding.
    padding: bytes | None = None

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    def dequantize(self) -> np.ndarray:
        """float32 values: q / multiplier for intgemm items (flat), the stored values otherwise."""
        if self.type in INTGEMM_TYPES:
            return (self.values.astype(np.float32) / np.float32(self.multiplier)).astype(np.float32)
        return self.values.astype(np.float32)

    def text(self) -> str:
        """An int8 item holding text (e.g. `special:model.yml`), without its trailing NUL."""
        return self.values.tobytes().rstrip(b"\0").decode("utf-8")

    def payload(self) -> bytes:
        """The item's data bytes as Marian writes them (values, multiplier, zero padding)."""
        data = np.ascontiguousarray(self.values, dtype=TYPES[self.type][1]).tobytes()
        if self.type in INTGEMM_TYPES:
            data += struct.pack("<f", float(self.multiplier))
        if self.padding is not None:
            return data + self.padding
        if self.type in INTGEMM_TYPES or (self.type & 0xF00) == 0x400:
            data += b"\0" * (-len(data) % ALIGN)
        return data


def _needed_bytes(code: int, numel: int) -> int:
    size = np.dtype(TYPES[code][1]).itemsize * numel
    return size + (4 if code in INTGEMM_TYPES else 0)


def read(path: str | os.PathLike) -> dict[str, Item]:
    """All items of a Marian `.bin` model, in file order. Raises MarianFormatError (naming the file and what
    was expected) for a foreign or truncated file or an unsupported item type."""
    path = Path(path)
    buf = memoryview(path.read_bytes())
    size = len(buf)

    def fail(msg: str):
        raise MarianFormatError(f"{path}: {msg}")

    if size < 16:
        fail(f"file has {size} bytes; a Marian binary model starts with a 16-byte header (version, item count)")
    version, n = struct.unpack_from("<QQ", buf, 0)
    if version != BINARY_FORMAT_VERSION:
        hint = ""
        if bytes(buf[:2]) == b"PK":
            hint = " (this looks like a zip/.npz file: a Marian .npz model loads with numpy.load)"
        elif bytes(buf[:4]) == b"GGUF":
            hint = " (this is a GGUF file: see convert_gguf.py)"
        fail(f"not a Marian binary model: format version {version} (first 8 bytes {bytes(buf[:8]).hex()}), "
             f"expected {BINARY_FORMAT_VERSION}{hint}")
    pos = 16
    if n == 0 or pos + _HEADER.size * n > size:
        fail(f"header announces {n} items, which needs {pos + _HEADER.size * n} bytes of headers; "
             f"the file has {size} bytes (truncated or not a Marian model)")
    headers = [_HEADER.unpack_from(buf, pos + _HEADER.size * i) for i in range(n)]
    pos += _HEADER.size * n
    names = []
    for i, (name_len, _, _, _) in enumerate(headers):
        if pos + name_len > size:
            fail(f"truncated: name of item {i} needs bytes {pos}..{pos + name_len}, the file has {size}")
        raw = bytes(buf[pos:pos + name_len])
        if not raw.endswith(b"\0"):
            fail(f"name of item {i} at byte {pos} is not NUL-terminated (not a Marian model?)")
        names.append(raw[:-1].decode("utf-8", errors="replace"))
        pos += name_len
    shapes = []
    for i, (_, _, shape_len, _) in enumerate(headers):
        if pos + 4 * shape_len > size:
            fail(f"truncated: shape of item {names[i]!r} needs bytes {pos}..{pos + 4 * shape_len}, the file has {size}")
        shapes.append(tuple(int(d) for d in struct.unpack_from(f"<{shape_len}i", buf, pos)))
        pos += 4 * shape_len
    if pos + 8 > size:
        fail(f"truncated before the data offset at byte {pos} (file has {size} bytes)")
    (pad,) = struct.unpack_from("<Q", buf, pos)
    pos += 8 + pad
    items: dict[str, Item] = {}
    for name, (_, code, _, data_len), shape in zip(names, headers, shapes):
        if code not in TYPES:
            fail(f"item {name!r} has unsupported type {type_name(code)}; supported: "
                 + ", ".join(f"0x{c:x} ({t[0]})" for c, t in TYPES.items()))
        if any(d < 0 for d in shape):
            fail(f"item {name!r} has a negative dimension in shape {shape}")
        if pos + data_len > size:
            fail(f"truncated: item {name!r} ({type_name(code)} {shape}) needs bytes {pos}..{pos + data_len}, "
                 f"the file has only {size}")
        numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
        need = _needed_bytes(code, numel)
        if data_len < need:
            fail(f"item {name!r} ({type_name(code)} {shape}) has {data_len} data bytes, expected at least {need}")
        dtype = np.dtype(TYPES[code][1]).newbyteorder("<")
        values = np.frombuffer(buf, dtype=dtype, count=numel, offset=pos).copy()
        multiplier = None
        if code in INTGEMM_TYPES:
            (multiplier,) = struct.unpack_from("<f", buf, pos + dtype.itemsize * numel)
        else:
            values = values.reshape(shape)
        items[name] = Item(name, code, shape, values, multiplier, bytes(buf[pos + need:pos + data_len]))
        pos += data_len
    if pos != size:
        fail(f"{size - pos} unexpected trailing bytes after the last item (ends at byte {pos})")
    return items


def serialize(items: list[Item] | dict[str, Item]) -> bytes:
    """The bytes of a Marian `.bin` model holding `items` in the given order (Marian's own layout)."""
    items = list(items.values()) if isinstance(items, dict) else list(items)
    names = [it.name.encode("utf-8") + b"\0" for it in items]
    payloads = [it.payload() for it in items]
    head = [struct.pack("<QQ", BINARY_FORMAT_VERSION, len(items))]
    head += [_HEADER.pack(len(nm), it.type, len(it.shape), len(pl)) for nm, it, pl in zip(names, items, payloads)]
    head += names
    head += [struct.pack(f"<{len(it.shape)}i", *it.shape) for it in items]
    pos = sum(len(h) for h in head)
    pad = ((pos + 8) // ALIGN + 1) * ALIGN - pos - 8
    head.append(struct.pack("<Q", pad) + b"\0" * pad)
    return b"".join(head + payloads)


def write(path: str | os.PathLike, items: list[Item] | dict[str, Item]) -> Path:
    """Write a Marian `.bin` model atomically (tmp file in the same folder, then os.replace)."""
    path = Path(path)
    data = serialize(items)
    with atomic_file(path) as fh:
        fh.write(data)
    return path


def float_item(name: str, values: np.ndarray) -> Item:
    values = np.asarray(values, dtype=np.float32)
    return Item(name, FLOAT32, tuple(values.shape), values)


def text_item(name: str, text: str) -> Item:
    raw = np.frombuffer(text.encode("utf-8") + b"\0", dtype=np.int8).copy()
    return Item(name, INT8, (len(raw),), raw)
