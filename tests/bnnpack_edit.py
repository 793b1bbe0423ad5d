"""Rewrite a ``.bnnpack`` file's JSON header and keep the file well-formed (lengths,
alignment, checksum): what someone editing a file on purpose would do, so that tests
reach the checks behind the checksum.

``read_parts(path)`` returns the header as a dict and the data section as bytes;
``write_parts(path, header, data)`` writes them back as a complete file
(``write_raw`` the same with the header as bytes, valid JSON or not).
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from bnn_runtime.format import ALIGNMENT, DIGEST_BYTES, FORMAT_VERSION, MAGIC

PREAMBLE = struct.Struct("<8sIIQQ")


def _aligned(offset: int) -> int:
    return -(-offset // ALIGNMENT) * ALIGNMENT


def read_parts(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """The JSON header of the file at ``path`` and its data section (the tensor bytes,
    from the first aligned offset after the header to the checksum)."""
    raw = Path(path).read_bytes()
    _, _, _, header_len, _ = PREAMBLE.unpack_from(raw)
    header = json.loads(raw[PREAMBLE.size : PREAMBLE.size + header_len])
    start = _aligned(PREAMBLE.size + header_len)
    return header, raw[start:-DIGEST_BYTES]


def write_parts(
    path: str | Path, header: dict[str, Any], data: bytes, version: int = FORMAT_VERSION
) -> Path:
    """Write ``header`` and ``data`` to ``path`` as a complete file: preamble with the
    header and file lengths, header, zero bytes up to the data section's alignment,
    data and the SHA-256 of everything before it."""
    return write_raw(path, json.dumps(header, separators=(",", ":")).encode(), data, version)


def write_raw(path: str | Path, encoded: bytes, data: bytes, version: int = FORMAT_VERSION) -> Path:
    """:func:`write_parts` with the header given as bytes, which need not be valid JSON."""
    start = _aligned(PREAMBLE.size + len(encoded))
    total = start + len(data) + DIGEST_BYTES
    body = bytearray(total - DIGEST_BYTES)
    PREAMBLE.pack_into(body, 0, MAGIC, version, 0, len(encoded), total)
    body[PREAMBLE.size : PREAMBLE.size + len(encoded)] = encoded
    body[start:] = data
    path = Path(path)
    path.write_bytes(bytes(body) + hashlib.sha256(body).digest())
    return path
