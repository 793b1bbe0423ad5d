"""Checkpoints that survive crashes and reveal damage.

A checkpoint is the dict ``torch.save`` writes, read back with
``torch.load(weights_only=True)`` only (no code in a file is ever run). Format version 2
adds ``sha256``: the SHA-256 of everything else in the dict (every tensor's dtype, shape
and bytes, every number, string and container, in order), computed again after loading,
so a changed byte is an error instead of different weights. Version 1 files (no checksum)
still load, with a warning.

Writing goes to a temporary with a unique name in the target folder (created with
O_EXCL, so no planted file or symbolic link is followed), is synced, and renamed over the
target; the folder is synced after. A run keeps ``last.pt`` (the newest state),
``previous.pt`` (the one before it, so that a file damaged after writing still leaves a
usable state) and ``best.pt``. The replaced ``last.pt`` becomes ``previous.pt`` through a
hard link made before the rename, so ``last.pt`` exists at every instant; if it is
missing anyway (removed by hand, or by an older bnn stopped while rotating), :func:`load`
reads a complete temporary it left instead.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import pickle
import random
import re
import secrets
import shutil
import stat
import struct
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from iopath.common.file_io import g_pathmgr

from bnn.runtime.format import MAGIC as BNNPACK_MAGIC
from bnn_core.errors import BnnError

FORMAT = "bnn-checkpoint"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
CHECKSUM_KEY = "sha256"
ZIP_MAGIC = b"PK\x03\x04"

log = logging.getLogger(__name__)


class CheckpointError(BnnError):
    """A checkpoint cannot be read or does not fit the run."""


def save(state: dict[str, Any], path: str | Path, keep_previous: bool = False) -> None:
    """Write ``state`` with its checksum to ``path`` atomically; with ``keep_previous``
    the file it replaces is kept as ``previous.pt`` beside it."""
    path = Path(path)
    g_pathmgr.mkdirs(str(path.parent))
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    payload[CHECKSUM_KEY] = digest(payload)
    temporary = _temporary_beside(path, lambda handle: torch.save(payload, handle))
    try:
        if keep_previous and os.path.lexists(path):
            _keep_as_previous(path)
        os.replace(temporary, path)
    except BaseException:
        _remove(temporary)
        raise
    sync_folder(path.parent)


def load(path: str | Path) -> dict[str, Any]:
    """Read and verify a checkpoint; every failure is a CheckpointError."""
    path = Path(path)
    if not os.path.lexists(path):
        found = completed_temporary(path)
        if found is None:
            raise CheckpointError(f"checkpoint {path} does not exist.{_previous_hint(path)}")
        log.warning(
            "checkpoint %s is missing (a run was stopped while replacing it); reading the "
            "complete checkpoint %s it left instead",
            path,
            found,
        )
        path = found
    state = _read(path)
    if state["format_version"] == 1:
        log.warning(
            "checkpoint %s was written by an older bnn (format version 1) without a checksum: "
            "damage to it cannot be detected",
            path,
        )
    return state


def temporaries(path: Path) -> list[Path]:
    """The temporaries that writing ``path`` creates and a stopped run leaves behind,
    newest first (symbolic links too, which are never read)."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:[A-Za-z0-9_]+\.)?tmp")
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    found = []
    for entry in entries:
        if pattern.fullmatch(entry.name):
            try:
                status = entry.stat(follow_symlinks=False)
            except OSError:  # removed meanwhile
                continue
            if not stat.S_ISDIR(status.st_mode):
                found.append((status.st_mtime_ns, Path(entry.path)))
    return [name for _, name in sorted(found, reverse=True)]


def completed_temporary(path: Path) -> Path | None:
    """The newest temporary of ``path`` that holds a complete, verified checkpoint."""
    for candidate in temporaries(path):
        if candidate.is_symlink():
            continue
        try:
            state = _read(candidate)
        except CheckpointError:
            continue
        if state["format_version"] >= 2:  # only a checksum proves that it is complete
            return candidate
    return None


def digest(state: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of ``state``'s contents, its own checksum entry left out."""
    sha = hashlib.sha256()
    _feed(sha, {key: value for key, value in state.items() if key != CHECKSUM_KEY})
    return sha.hexdigest()


def evaluated_weights(state: dict[str, Any]) -> dict[str, Any]:
    """The model weights a run evaluated: the EMA average when the run kept one (its
    accuracies, and so ``best.pt``, are those of the average), else ``model``."""
    ema = state.get("ema")
    if not ema:
        return state["model"]
    return {k.removeprefix("module."): v for k, v in ema.items() if k.startswith("module.")}


def _temporary_beside(target: Path, write: Callable[[BinaryIO], object]) -> Path:
    """A new file with a unique name in ``target``'s folder (created exclusively, so no
    planted file or link is followed), filled by ``write`` and synced; removed if that
    fails."""
    descriptor, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), _file_mode())
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        _remove(Path(name))
        raise
    return Path(name)


def _keep_as_previous(path: Path) -> None:
    """Make the current ``path`` the new ``previous.pt`` while ``path`` stays in place."""
    previous = path.with_name("previous.pt")
    while True:
        link = previous.with_name(f".{previous.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.link(path, link, follow_symlinks=False)
            break
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links: copy instead
            link = _copy_temporary(path, previous)
            break
    try:
        os.replace(link, previous)
    except BaseException:
        _remove(link)
        raise


def _copy_temporary(source: Path, target: Path) -> Path:
    """A synced copy of ``source`` in a temporary beside ``target``."""

    def copy(handle: BinaryIO) -> None:
        with open(source, "rb") as original:
            shutil.copyfileobj(original, handle)

    return _temporary_beside(target, copy)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def sync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


@functools.cache
def _file_mode() -> int:
    """The mode a plain ``open`` would give a new file: 0o666 less the umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _read(path: Path) -> dict[str, Any]:
    """Read and verify ``path``, with a message for each way a file can be wrong."""
    if path.is_dir():
        inside = [n for n in ("best.pt", "last.pt") if (path / n).is_file()]
        hint = f" Give a file in it, such as {path / inside[0]}." if inside else ""
        raise CheckpointError(f"{path} is a directory, not a checkpoint file.{hint}")
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(BNNPACK_MAGIC))
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc.strerror}") from None
    _check_kind(path, head)
    try:
        with g_pathmgr.open(str(path), "rb") as handle, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's remarks on odd files: the error says it
            state = torch.load(handle, map_location="cpu", weights_only=True)
    except Exception as exc:  # whatever a damaged file makes the reader raise is reported
        raise _unreadable(path, exc) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a bnn checkpoint (no '{FORMAT}' marker)")
    version = state.get("format_version")
    if version is None:
        raise CheckpointError(
            f"checkpoint {path} has no format version: it was altered after bnn wrote it."
            f"{_previous_hint(path)}"
        )
    if version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}, this bnn reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    if version >= 2:
        stored = state.get(CHECKSUM_KEY)
        if not isinstance(stored, str):
            raise CheckpointError(
                f"checkpoint {path} has no checksum, which its format version {version} "
                f"requires: it was altered after bnn wrote it.{_previous_hint(path)}"
            )
        if digest(state) != stored:
            raise CheckpointError(
                f"checkpoint {path} is corrupted: its contents do not match the SHA-256 "
                f"checksum stored in it, so it changed after it was written.{_previous_hint(path)}"
            )
    return state


def _check_kind(path: Path, head: bytes) -> None:
    """Refuse files that are recognisably something else before any reader touches them."""
    if head.startswith(BNNPACK_MAGIC):
        raise CheckpointError(
            f"{path} is an exported model (a .bnnpack file written by bnn export), not a "
            f"training checkpoint: it cannot be resumed or evaluated as one; `bnn bench {path}` "
            "runs it, and its checkpoint (best.pt or last.pt of the run) is what bnn eval reads"
        )
    if head.startswith(b"\x80"):
        raise CheckpointError(
            f"{path} is a bare Python pickle, not a checkpoint: bnn does not read pickles, which "
            "can run code; a checkpoint is the zip archive that bnn train writes"
        )
    if head and not head.startswith(ZIP_MAGIC):
        raise CheckpointError(
            f"{path} is not a checkpoint: a checkpoint is the zip archive that bnn train writes "
            f"(best.pt, last.pt, previous.pt), and this file begins with {head!r}"
        )


def _unreadable(path: Path, exc: Exception) -> CheckpointError:
    text = str(exc)
    refused = re.search(r"GLOBAL\s+([\w.]+)|Unsupported global:?\s+([\w.]+)", text)
    if isinstance(exc, pickle.UnpicklingError) and "Weights only load failed" in text and refused:
        return CheckpointError(
            f"checkpoint {path} was refused: it holds Python objects or code "
            f"({refused.group(1) or refused.group(2)}) besides tensors, numbers and strings, "
            "and bnn never runs code from a file; a checkpoint written by bnn train holds none"
        )
    # the first sentence of the reader's message; the rest is advice that does not apply
    lines = [line for line in text.splitlines() if line.strip()] or ["no detail"]
    detail = lines[0].split(". ")[0].rstrip(".")
    return CheckpointError(
        f"checkpoint {path} is truncated or corrupted and cannot be read "
        f"({type(exc).__name__}: {detail}).{_previous_hint(path)}"
    )


def _previous_hint(path: Path) -> str:
    """Where to resume from instead of ``path``: its ``previous.pt``, if that is intact (a
    file damaged after it was written leaves that one)."""
    previous = path.with_name("previous.pt")
    if previous.name == path.name or not previous.is_file():
        return ""
    try:
        _read(previous)
    except CheckpointError:
        return ""
    return f" The previous checkpoint is intact: resume with --resume {previous}."


def _feed(sha: Any, value: Any) -> None:
    """Add ``value`` to ``sha``, tagged by kind so that different contents never hash
    alike, in the order in which a loaded checkpoint presents them."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().resolve_conj().resolve_neg()
        sha.update(f"T{tensor.dtype}{tuple(tensor.shape)}:".encode())
        try:
            sha.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy())
        except (RuntimeError, TypeError):  # quantized and sparse tensors: by value
            sha.update(repr(tensor.tolist()).encode())
    elif isinstance(value, Mapping):
        sha.update(b"D%d:" % len(value))
        for key, item in value.items():
            _feed(sha, key)
            _feed(sha, item)
    elif isinstance(value, list | tuple):
        sha.update(b"%s%d:" % (b"L" if isinstance(value, list) else b"U", len(value)))
        for item in value:
            _feed(sha, item)
    elif isinstance(value, set | frozenset):  # no stable order: combine the items' digests
        items = sorted(digest({"item": item}) for item in value)
        sha.update(f"Z{len(items)}:{''.join(items)}".encode())
    elif isinstance(value, bool) or value is None:
        sha.update(f"B{value}:".encode())
    elif isinstance(value, int):
        sha.update(f"I{value}:".encode())
    elif isinstance(value, float):
        sha.update(b"F" + struct.pack("<d", value))
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        sha.update(b"S%d:" % len(data) + data)
    elif isinstance(value, bytes | bytearray):
        sha.update(b"Y%d:" % len(value) + bytes(value))
    else:  # the few other types torch.load allows (dtype, device, complex): by repr
        sha.update(f"O{type(value).__qualname__}:{value!r}:".encode())


def rng_state() -> dict[str, Any]:
    """The random states of torch (CPU and CUDA), NumPy and Python, as plain data."""
    numpy_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [
            numpy_state[0],
            torch.from_numpy(numpy_state[1].astype(np.int64)),
            *map(float, numpy_state[2:]),
        ],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state(
        (kind, keys.numpy().astype(np.uint32), int(position), int(has_gauss), cached)
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
