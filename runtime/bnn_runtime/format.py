"""The ``.bnnpack`` file: a self-describing, checksummed container of a network graph
and its tensors, binary weights stored 1 bit each. Torch-free: NumPy only.

Layout (all integers little-endian)::

    offset 0   preamble, 32 bytes:
                 magic       8 bytes  b"BNNPACK\\0"
                 version     uint32   format version (1)
                 flags       uint32   0 (reserved)
                 header_len  uint64   length of the JSON header in bytes
                 file_len    uint64   length of the whole file, checksum included
    offset 32  JSON header (UTF-8): {"format", "version", "metadata", "graph", "tensors"}
               zero bytes up to the next multiple of 16: the data section starts there
               tensor blobs, each at a multiple of 16 from the data section's start
    last 32    SHA-256 of every byte before it

Each entry of ``tensors`` in the header gives ``dtype`` (``float32``, ``float16``,
``int8`` or ``bits``), ``shape``, ``offset`` (from the start of the data section) and ``nbytes``.
A ``bits`` tensor holds signs, 1 bit each: element ``i`` of the row-major flattened
tensor is bit ``i % 8`` of byte ``i // 8`` (little-endian bit order), 1 meaning +1;
``nbytes = ceil(elements / 8)``. Binary weights are stored with shape
``[out, kernel_h, kernel_w, in_per_group]`` (input channels last and contiguous), so
when the input channels are a multiple of 64 the bytes read as little-endian 64-bit
words are exactly the kernels' packed layout. docs/deploy.md documents the graph.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bnn_runtime import validate
from bnn_runtime.errors import RuntimeFormatError
from bnn_runtime.graph import Graph

MAGIC = b"BNNPACK\x00"
FORMAT_NAME = "bnnpack"
FORMAT_VERSION = 1
ALIGNMENT = 16
DIGEST_BYTES = 32
_PREAMBLE = struct.Struct("<8sIIQQ")
FLOAT_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
#: Every dtype stored one value per element (``bits`` packs eight signs per byte).
VALUE_DTYPES = {**FLOAT_DTYPES, "int8": np.dtype("i1")}


@dataclass(frozen=True)
class BitTensor:
    """A tensor of signs stored 1 bit each (1 = +1), in the file's bit order."""

    shape: tuple[int, ...]
    data: np.ndarray

    @classmethod
    def from_signs(cls, positive: np.ndarray) -> BitTensor:
        """Pack a boolean array (True = +1)."""
        flat = np.ascontiguousarray(positive, dtype=bool).reshape(-1)
        return cls(tuple(int(d) for d in positive.shape), np.packbits(flat, bitorder="little"))

    @property
    def size(self) -> int:
        """Number of signs."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Stored bytes: one bit per sign, rounded up to a whole byte."""
        return (self.size + 7) // 8

    def signs(self) -> np.ndarray:
        """The signs as a boolean array of ``shape`` (True = +1)."""
        bits = np.unpackbits(self.data, count=self.size, bitorder="little")
        return bits.view(bool).reshape(self.shape)

    def words(self) -> np.ndarray:
        """The kernels' packed layout: uint64 ``[*shape[:-1], ceil(shape[-1] / 64)]``, bit
        ``i`` of word ``k`` being element ``64 k + i`` of the last axis, padding bits 0."""
        *lead, last = self.shape
        words = -(-last // 64)
        if last % 64 == 0:
            packed = self.data
        else:
            padded = np.zeros((math.prod(lead), words * 64), dtype=bool)
            padded[:, :last] = self.signs().reshape(-1, last)
            packed = np.packbits(padded, axis=1, bitorder="little")
        return np.frombuffer(packed.tobytes(), dtype="<u8").astype(np.uint64).reshape(*lead, words)


Stored = np.ndarray | BitTensor


@dataclass(frozen=True)
class WriteResult:
    """What :func:`write` wrote: the file size, the bytes of tensor data in it, and
    the rest (preamble, JSON header, alignment padding, checksum)."""

    path: Path
    file_bytes: int
    tensor_bytes: int

    @property
    def metadata_bytes(self) -> int:
        """Everything that is not tensor data."""
        return self.file_bytes - self.tensor_bytes


@dataclass
class Pack:
    """A file read back: its header's metadata, graph and decoded tensors, and what its
    validation found: each tensor's dtype name and shape (``specs``) and each value's
    shape for one sample of the declared input (``shapes``, channels first)."""

    path: Path
    version: int
    metadata: dict[str, Any]
    graph: Graph
    tensors: dict[str, Stored]
    file_bytes: int
    specs: dict[str, validate.TensorSpec]
    shapes: dict[str, validate.Shape]


def _aligned(offset: int) -> int:
    return -(-offset // ALIGNMENT) * ALIGNMENT


def _blob(tensor: Stored) -> tuple[str, bytes]:
    if isinstance(tensor, BitTensor):
        return "bits", tensor.data.tobytes()
    if tensor.dtype == np.int8:
        return "int8", np.ascontiguousarray(tensor).tobytes()
    for name, dtype in FLOAT_DTYPES.items():
        if tensor.dtype.kind == "f" and tensor.dtype.itemsize == dtype.itemsize:
            return name, np.ascontiguousarray(tensor, dtype=dtype).tobytes()
    raise TypeError(
        f"cannot store a tensor of dtype {tensor.dtype} (float32, float16, int8 or bits)"
    )


def write(
    path: str | Path, graph: Graph, tensors: Mapping[str, Stored], metadata: Mapping[str, Any]
) -> WriteResult:
    """Write ``graph`` and ``tensors`` to ``path`` atomically (temporary file, then
    rename). Float tensors keep their dtype (float32 or float16), int8 ones stay int8."""
    path = Path(path)
    graph.check(tensors)
    entries: dict[str, dict[str, Any]] = {}
    blobs: list[tuple[int, bytes]] = []
    offset = tensor_bytes = 0
    for name, tensor in tensors.items():
        dtype, blob = _blob(tensor)
        entries[name] = {
            "dtype": dtype,
            "shape": list(tensor.shape),
            "offset": offset,
            "nbytes": len(blob),
        }
        blobs.append((offset, blob))
        tensor_bytes += len(blob)
        offset = _aligned(offset + len(blob))
    data_size = blobs[-1][0] + len(blobs[-1][1]) if blobs else 0
    header = json.dumps(
        {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "metadata": dict(metadata),
            "graph": graph.to_dict(),
            "tensors": entries,
        },
        separators=(",", ":"),
    ).encode()
    data_start = _aligned(_PREAMBLE.size + len(header))
    file_len = data_start + data_size + DIGEST_BYTES
    body = bytearray(file_len - DIGEST_BYTES)
    _PREAMBLE.pack_into(body, 0, MAGIC, FORMAT_VERSION, 0, len(header), file_len)
    body[_PREAMBLE.size : _PREAMBLE.size + len(header)] = header
    for start, blob in blobs:
        body[data_start + start : data_start + start + len(blob)] = blob
    digest = hashlib.sha256(body).digest()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(body)
        handle.write(digest)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return WriteResult(path, file_len, tensor_bytes)


def read(path: str | Path) -> Pack:
    """Read and check a file: magic, format version, length (truncation), SHA-256
    checksum, header and graph. Every failure is a :class:`RuntimeFormatError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RuntimeFormatError(f"{path} does not exist") from None
    except OSError as exc:
        raise RuntimeFormatError(f"{path} cannot be read: {exc.strerror or exc}") from None
    size = len(data)
    if not size:
        raise RuntimeFormatError(f"{path} is empty (0 bytes): not a .bnnpack file")
    if not MAGIC.startswith(data[: len(MAGIC)]):
        raise RuntimeFormatError(
            f"{path} is not a .bnnpack file (it does not start with the bnnpack magic bytes); "
            "write one with `bnn export`"
        )
    if size < _PREAMBLE.size:
        raise RuntimeFormatError(f"{path} is truncated: {size} bytes, not even the preamble")
    _, version, _, header_len, file_len = _PREAMBLE.unpack_from(data)
    if version != FORMAT_VERSION:
        advice = "re-export the model with this bnn" if version < FORMAT_VERSION else "upgrade bnn"
        raise RuntimeFormatError(
            f"{path} has file format {version}, this runtime reads format {FORMAT_VERSION}: "
            f"{advice}"
        )
    if size < file_len:
        raise RuntimeFormatError(
            f"{path} is truncated: {size:,} of its {file_len:,} bytes are present "
            "(an interrupted copy or download?)"
        )
    if size > file_len:
        raise RuntimeFormatError(
            f"{path} is corrupted: {size - file_len:,} bytes follow the end its header declares"
        )
    body = memoryview(data)[: size - DIGEST_BYTES]
    if hashlib.sha256(body).digest() != data[size - DIGEST_BYTES :]:
        raise RuntimeFormatError(
            f"{path} is corrupted: its SHA-256 checksum does not match its contents"
        )
    if header_len > min(validate.MAX_HEADER_BYTES, size - _PREAMBLE.size - DIGEST_BYTES):
        raise RuntimeFormatError(
            f"{path}: its header length {header_len:,} is over the limit of "
            f"{validate.MAX_HEADER_BYTES:,} bytes or beyond the end of the file"
        )
    header = _header(path, data[_PREAMBLE.size : _PREAMBLE.size + header_len], version)
    data_start = _aligned(_PREAMBLE.size + header_len)
    data_end = size - DIGEST_BYTES
    entries = header["tensors"]
    if len(entries) > validate.MAX_TENSORS:
        raise RuntimeFormatError(
            f"{path}: the file stores {len(entries):,} tensors, over {validate.MAX_TENSORS:,}"
        )
    layout = {name: _entry(path, name, entry) for name, entry in entries.items()}
    _check_layout(path, layout, data_end - data_start)
    try:
        graph = Graph.from_dict(header["graph"])
    except RuntimeFormatError as exc:
        raise RuntimeFormatError(f"{path}: {exc}") from None
    specs = {name: (entry[0], entry[1]) for name, entry in layout.items()}
    shapes = validate.check(path, graph, specs)
    tensors = {name: _tensor(entry, data, data_start) for name, entry in layout.items()}
    return Pack(path, version, header["metadata"], graph, tensors, size, specs, shapes)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object of the JSON header; a key given twice (which readers may resolve
    differently) is an error."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {key!r} appears twice in one object")
        result[key] = value
    return result


def _header(path: Path, raw: bytes, version: int) -> dict[str, Any]:
    try:
        header = json.loads(raw.decode(), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise RuntimeFormatError(f"{path}: the JSON header cannot be parsed ({reason})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise RuntimeFormatError(f"{path}: the header does not describe a {FORMAT_NAME} file")
    if not isinstance(header.get("tensors"), dict) or not isinstance(header.get("graph"), dict):
        raise RuntimeFormatError(f"{path}: the header lacks its 'graph' or 'tensors' section")
    if header.get("version", version) != version:
        raise RuntimeFormatError(
            f"{path}: the header's version {header['version']!r} differs from the file's "
            f"format version {version}"
        )
    header.setdefault("metadata", {})
    if not isinstance(header["metadata"], dict):
        raise RuntimeFormatError(f"{path}: the header's 'metadata' must be an object")
    return header


#: A tensor's checked header entry: dtype, shape, offset in the data section, bytes.
Entry = tuple[str, tuple[int, ...], int, int]


def _entry(path: Path, name: str, entry: Any) -> Entry:
    """The header entry of tensor ``name``, every field of exactly its type and within
    the limits of :mod:`bnn_runtime.validate`."""
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "offset", "nbytes"}:
        raise RuntimeFormatError(
            f"{where}: its header entry must be an object with exactly 'dtype', 'shape', "
            "'offset' and 'nbytes'"
        )
    dtype, shape, offset, nbytes = (entry[k] for k in ("dtype", "shape", "offset", "nbytes"))
    if type(dtype) is not str or (dtype != "bits" and dtype not in VALUE_DTYPES):
        raise RuntimeFormatError(
            f"{where} has an unknown dtype {dtype!r} (float32, float16, int8, bits)"
        )
    limit = validate.MAX_ELEMENTS
    if (
        type(shape) is not list
        or not 1 <= len(shape) <= validate.MAX_TENSOR_RANK
        or not all(type(d) is int and 1 <= d <= limit for d in shape)
        or math.prod(shape) > limit
    ):
        raise RuntimeFormatError(
            f"{where}: its shape must be a list of 1 to {validate.MAX_TENSOR_RANK} ints "
            f"in [1, {limit:,}] with at most {limit:,} elements, got {str(shape)[:80]}"
        )
    for field, value in (("offset", offset), ("nbytes", nbytes)):
        if type(value) is not int or value < 0:
            raise RuntimeFormatError(f"{where}: its {field!r} must be an int >= 0, got {value!r}")
    if offset % ALIGNMENT:
        raise RuntimeFormatError(f"{where}: its offset {offset} is not a multiple of {ALIGNMENT}")
    count = math.prod(shape)
    expected = (count + 7) // 8 if dtype == "bits" else count * VALUE_DTYPES[dtype].itemsize
    if nbytes != expected:
        raise RuntimeFormatError(
            f"{where} ({dtype}, shape {shape}) does not fit its {nbytes} bytes: it needs {expected}"
        )
    return dtype, tuple(shape), offset, nbytes


def _check_layout(path: Path, layout: Mapping[str, Entry], data_bytes: int) -> None:
    """Every tensor lies inside the data section, none overlapping another."""
    end, previous = 0, ""
    for name, (_, _, offset, nbytes) in sorted(layout.items(), key=lambda item: item[1][2]):
        if offset < end:
            raise RuntimeFormatError(
                f"{path}: tensor {name!r} at offset {offset} overlaps tensor {previous!r}"
            )
        end, previous = offset + nbytes, name
        if end > data_bytes:
            raise RuntimeFormatError(
                f"{path}: tensor {name!r} ({nbytes} bytes at offset {offset}) ends beyond "
                f"the {data_bytes}-byte data section"
            )


def _tensor(entry: Entry, data: bytes, data_start: int) -> Stored:
    dtype, shape, offset, nbytes = entry
    blob = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=data_start + offset)
    if dtype == "bits":
        return BitTensor(shape, blob)
    return blob.view(VALUE_DTYPES[dtype]).reshape(shape)
