"""Checkpoints that survive crashes: written atomically (temporary file, fsync, rename)
through iopath, loadable with ``torch.load(weights_only=True)``, and checked on load so
that a truncated or corrupted file gives a clear error instead of a traceback.

A run keeps ``last.pt`` (the newest state), ``previous.pt`` (the one before it, so a
file damaged after writing still leaves a usable state) and ``best.pt``.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from iopath.common.file_io import g_pathmgr

from bnn_core.errors import BnnError

FORMAT = "bnn-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(BnnError):
    """A checkpoint cannot be read or does not fit the run."""


def save(state: dict[str, Any], path: str | Path, keep_previous: bool = False) -> None:
    """Write ``state`` to ``path`` atomically; with ``keep_previous`` the file it replaces
    is kept as ``previous.pt`` beside it."""
    path = Path(path)
    g_pathmgr.mkdirs(str(path.parent))
    temporary = path.with_name(f".{path.name}.tmp")
    with g_pathmgr.open(str(temporary), "wb") as handle:
        torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    if keep_previous and g_pathmgr.exists(str(path)):
        os.replace(path, path.with_name("previous.pt"))
    os.replace(temporary, path)


def load(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; every failure is a CheckpointError."""
    path = Path(path)
    if not g_pathmgr.exists(str(path)):
        raise CheckpointError(f"checkpoint {path} does not exist.{_previous_hint(path)}")
    try:
        with g_pathmgr.open(str(path), "rb") as handle:
            state = torch.load(handle, map_location="cpu", weights_only=True)
    except (
        RuntimeError,
        EOFError,
        OSError,  # a zip archive cut inside a record: "[Errno 22] Invalid argument"
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        ValueError,
    ) as exc:
        # torch's first sentence; the rest is advice (weights_only=False) that does not apply
        detail = (str(exc).splitlines() or ["no detail"])[0].split(". ")[0].rstrip(".")
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupted and cannot be read "
            f"({type(exc).__name__}: {detail}).{_previous_hint(path)}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a bnn checkpoint (no '{FORMAT}' marker)")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {state.get('format_version')}, this bnn "
            f"reads version {FORMAT_VERSION}"
        )
    return state


def evaluated_weights(state: dict[str, Any]) -> dict[str, Any]:
    """The model weights a run evaluated: the EMA average when the run kept one (its
    accuracies, and so ``best.pt``, are those of the average), else ``model``."""
    ema = state.get("ema")
    if not ema:
        return state["model"]
    return {k.removeprefix("module."): v for k, v in ema.items() if k.startswith("module.")}


def _previous_hint(path: Path) -> str:
    """Where to resume from instead of ``path``: its ``previous.pt``, if that is intact (a
    run killed while rotating its checkpoints leaves only that one)."""
    previous = path.with_name("previous.pt")
    if previous.exists() and previous != path and _readable(previous):
        return f" The previous checkpoint is intact: resume with --resume {previous}."
    return ""


def _readable(path: Path) -> bool:
    try:
        with g_pathmgr.open(str(path), "rb") as handle:
            torch.load(handle, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return True


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
