"""Checks of the paths a command reads and writes, made before any work starts, so
that a run folder that cannot be created fails in a second, not after the model and
data are built (or after an hour of training)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bnn_core.errors import ConfigError


def _exists(path: Path, what: str) -> bool:
    if "\0" in str(path):
        raise ConfigError(f"{what} {str(path)!r} is not a valid path (it holds a NUL character)")
    try:
        return path.exists() or path.is_symlink()
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be checked: {exc.strerror}") from None


def _check_writable_folder(folder: Path, target: Path, what: str) -> None:
    """``folder`` (an existing directory) must accept new files."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{what} {target} cannot be written: the directory {folder} is not writable"
        )
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{what} {target} cannot be written: files cannot be created in {folder} "
            f"({exc.strerror or exc})"
        ) from None


def _existing_parent(path: Path, what: str) -> Path:
    """The nearest existing folder ``path`` would be created in; an error if that is a file."""
    for parent in path.parents:
        if _exists(parent, what):
            if not parent.is_dir():
                raise ConfigError(
                    f"{what} {path} cannot be created: {parent} is a file, not a directory"
                )
            return parent
    return Path(".")


def check_output_dir(path: Path, what: str) -> None:
    """``path`` is a directory this process can write into, or can be created as one."""
    if _exists(path, what):
        if not path.is_dir():
            raise ConfigError(
                f"{what} {path} exists and is not a directory; choose another path or remove it"
            )
        _check_writable_folder(path, path, what)
        return
    _check_writable_folder(_existing_parent(path, what), path, what)


def check_output_file(path: Path, what: str) -> None:
    """``path`` can be written as a regular file (replacing an existing regular file)."""
    if _exists(path, what):
        if path.is_dir():
            raise ConfigError(
                f"{what} {path} is a directory; give the name of the file to write in it, "
                f"for example {path / 'model.bnnpack'}"
            )
        if not path.is_file():
            raise ConfigError(
                f"{what} {path} exists and is not a regular file (a device, pipe or socket); "
                "choose another path"
            )
    _check_writable_folder(_existing_parent(path, what), path, what)


def check_input_file(path: Path, what: str) -> None:
    """``path`` is an existing regular file, with a message saying what it is otherwise."""
    if not _exists(path, what):
        raise ConfigError(f"{what} {path} does not exist")
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory, not a file")
    if not path.is_file():
        raise ConfigError(f"{what} {path} is not a regular file (a device, pipe or socket)")
