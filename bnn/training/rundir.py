"""A run directory belongs to one run at a time: an exclusive lock on ``<dir>/.lock``,
held while the run lasts, and the clean-up of the temporaries that stopped runs left.

The lock is ``flock``: the kernel releases it when its holder ends, however it ends, so a
lock file left by a killed run never blocks the next one; the file only tells who holds
the lock (process, host, since when) and, found non-empty but free, that its holder died.
Forked children (data-loading workers) close their copy of the lock's descriptor, so that
they do not keep the lock of a run killed before them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from bnn.training import checkpoint
from bnn_core.errors import BnnError

LOCK_NAME = ".lock"

log = logging.getLogger(__name__)

_held: set[int] = set()  # the descriptors of the locks this process holds


def _close_in_child() -> None:
    for descriptor in _held:
        with contextlib.suppress(OSError):
            os.close(descriptor)  # the parent's lock stays: it holds the descriptor too
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)


class RunDirectoryError(BnnError):
    """The run directory is used by another run, or cannot be claimed."""


class RunLock:
    """The held lock of a run directory; :meth:`release` (or leaving a ``with`` block)
    frees it."""

    def __init__(self, folder: Path, descriptor: int) -> None:
        self.folder = folder
        self._descriptor: int | None = descriptor

    def release(self) -> None:
        """Empty the lock file (no holder) and free the lock; the file stays, since
        removing it could let two runs lock two different files of one name."""
        if self._descriptor is None:
            return
        descriptor, self._descriptor = self._descriptor, None
        _held.discard(descriptor)
        with contextlib.suppress(OSError):
            os.ftruncate(descriptor, 0)
        os.close(descriptor)  # frees the flock

    def __enter__(self) -> RunLock:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()


def claim(folder: Path) -> RunLock:
    """Create ``folder`` if needed, lock it for this process, and remove (or, where the
    checkpoint they would have replaced is missing, restore) the temporaries that runs
    stopped in it left. A folder another live run holds is a RunDirectoryError."""
    lock_path = folder / LOCK_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
        descriptor = os.open(lock_path, flags, 0o644)
    except OSError as exc:
        reason = (
            "it is a symbolic link; remove it"
            if exc.errno == errno.ELOOP
            else exc.strerror or str(exc)
        )
        raise RunDirectoryError(
            f"cannot lock the run directory {folder}: {lock_path} cannot be opened ({reason})"
        ) from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _read_holder(descriptor)
        os.close(descriptor)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunDirectoryError(
                f"cannot lock the run directory {folder} ({exc.strerror}); its file system "
                "may not support locks"
            ) from None
        raise RunDirectoryError(
            f"the run directory {folder} is in use by another run: {_describe(holder)}. Two "
            "runs in one directory would overwrite each other's checkpoints and metrics; wait "
            "until that run ends, or give this one its own directory (--exp-name NAME or "
            "--set output.dir=PATH)"
        ) from None
    stale = _read_holder(descriptor)
    if stale:
        log.warning(
            "took over the lock of the run directory %s from %s, which ended without releasing it",
            folder,
            _describe(stale, held=False),
        )
    _held.add(descriptor)
    lock = RunLock(folder, descriptor)
    try:
        _write_holder(descriptor)
        clean_leftovers(folder)
    except OSError as exc:
        lock.release()
        raise RunDirectoryError(
            f"cannot prepare the run directory {folder}: {exc.strerror or exc}"
            + (f" ({exc.filename})" if exc.filename else "")
        ) from None
    except BaseException:
        lock.release()
        raise
    return lock


def clean_leftovers(folder: Path) -> None:
    """Remove the checkpoint temporaries in ``folder``; where the checkpoint a temporary
    was to replace is missing and the temporary is complete, it becomes that checkpoint.
    Call it only while holding the folder's lock: a live run's temporaries look alike."""
    targets = {_target_name(p.name) for p in folder.iterdir() if _target_name(p.name)}
    removed = 0
    for name in sorted(targets):
        target = folder / name
        if not os.path.lexists(target):
            complete = checkpoint.completed_temporary(target)
            if complete is not None:
                os.replace(complete, target)
                log.warning(
                    "restored %s from the complete checkpoint %s that a stopped run left",
                    target,
                    complete.name,
                )
        for leftover in checkpoint.temporaries(target):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
                removed += 1
    if removed:
        log.info("removed %d temporary file(s) that a stopped run left in %s", removed, folder)
    checkpoint.sync_folder(folder)


def _target_name(name: str) -> str | None:
    """``last.pt`` for ``.last.pt.k3j9x2ab.tmp`` or ``.last.pt.tmp``; None for other names."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    stem = name[1:-4]
    if stem.endswith(".pt"):
        return stem
    base, _, _ = stem.rpartition(".")
    return base if base.endswith(".pt") else None


def _read_holder(descriptor: int) -> dict[str, Any]:
    try:
        raw = os.pread(descriptor, 4096, 0)
        holder = json.loads(raw.decode()) if raw.strip() else {}
    except (OSError, ValueError):
        return {"unreadable": True}
    return holder if isinstance(holder, dict) else {"unreadable": True}


def _write_holder(descriptor: int) -> None:
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join(sys.argv)[:300],
    }
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, json.dumps(holder).encode() + b"\n", 0)
    os.fsync(descriptor)


def _describe(holder: dict[str, Any], held: bool = True) -> str:
    """Who ``holder`` is; with ``held``, noting a holder that ended but left the lock held."""
    if not holder or "pid" not in holder:
        return "a process that has not written its details"
    text = f"process {holder.get('pid')} on host {holder.get('host')}"
    if holder.get("since"):
        text += f", since {holder['since']}"
    if holder.get("command"):
        text += f" ({holder['command']})"
    if held and holder.get("host") == socket.gethostname() and not _alive(holder.get("pid")):
        text += ", which has ended, but a process it started still holds the lock"
    return text


def _alive(pid: Any) -> bool:
    """Whether process ``pid`` of this host runs (or cannot be told: assumed so)."""
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
