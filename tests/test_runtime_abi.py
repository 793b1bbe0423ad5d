"""The C interface of the kernel library: the public header, its ABI version, and the
ctypes mirror of its structs. A library whose ABI version differs from the Python side's
(or that has none) is not used: the runtime warns and runs the NumPy reference, as it
does when the library is missing."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bnn_runtime import _library, dispatch, kernels

ROOT = Path(__file__).resolve().parents[1]
INCLUDE = ROOT / "runtime" / "bnn_runtime" / "include"
HEADER = INCLUDE / "bnn_runtime.h"
COMPILER = shutil.which("gcc") or shutil.which("cc")
needs_compiler = pytest.mark.skipif(COMPILER is None, reason="needs a C compiler")

# Each ctypes mirror and the C type it mirrors.
STRUCTS = {
    _library.OutputTransform: "bnn_output_transform",
    _library.ConvSpec: "bnn_conv_spec",
    _library.Window: "bnn_window",
    _library.PoolSpec: "bnn_pool_spec",
}


@pytest.fixture
def fresh_library(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Loading starts over in the test, and again after it."""
    monkeypatch.delenv(kernels.ENV_ISA, raising=False)

    def clear() -> None:
        _library.load.cache_clear()
        dispatch._supported.cache_clear()
        dispatch._resolve.cache_clear()

    clear()
    yield
    monkeypatch.undo()
    clear()


def test_header_library_and_python_agree_on_the_abi_version() -> None:
    declared = re.search(r"#define BNN_ABI_VERSION (\d+)", HEADER.read_text())
    assert declared is not None
    assert int(declared.group(1)) == _library.ABI_VERSION
    lib = _library.load()
    if lib is not None:
        assert lib.bnn_abi_version() == _library.ABI_VERSION


def _fields(struct: type[ctypes.Structure], prefix: str = "") -> Iterator[tuple[str, int, int]]:
    """(C member path, offset, size) of every leaf field, nested structs flattened."""
    for name, kind in struct._fields_:
        descriptor = getattr(struct, name)
        if isinstance(kind, type) and issubclass(kind, ctypes.Structure):
            for path, offset, size in _fields(kind, f"{prefix}{name}."):
                yield path, descriptor.offset + offset, size
        else:
            yield f"{prefix}{name}", descriptor.offset, descriptor.size


@needs_compiler
def test_ctypes_structs_have_the_headers_layout(tmp_path: Path) -> None:
    """The C compiler's sizeof and offsetof for every struct and member equal ctypes'."""
    expected, lines = [], []
    for struct, c_name in STRUCTS.items():
        expected.append(f"{c_name} {ctypes.sizeof(struct)}")
        lines.append(f'printf("{c_name} %zu\\n", sizeof({c_name}));')
        for path, offset, size in _fields(struct):
            expected.append(f"{c_name}.{path} {offset} {size}")
            lines.append(
                f'printf("{c_name}.{path} %zu %zu\\n", offsetof({c_name}, {path}), '
                f"sizeof((({c_name} *)0)->{path}));"
            )
    source = tmp_path / "layout.c"
    source.write_text(
        '#include <stddef.h>\n#include <stdio.h>\n#include "bnn_runtime.h"\n'
        "int main(void) {\n" + "\n".join(lines) + "\nreturn 0;\n}\n"
    )
    binary = tmp_path / "layout"
    subprocess.run(
        [COMPILER, "-Wall", "-Werror", f"-I{INCLUDE}", "-o", str(binary), str(source)],
        check=True,
        capture_output=True,
        text=True,
    )
    got = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    assert got.split("\n")[:-1] == expected


def _falls_back_to_numpy() -> None:
    assert kernels.available_isas() == []
    w = kernels.pack_weights(np.array([[1.0, -1.0, 1.0], [-1.0, -1.0, 1.0]]))
    y = kernels.binary_linear(np.ones((1, 3), np.float32), w, in_features=3)
    assert y.tolist() == [[1.0, -1.0]]


@pytest.mark.usefixtures("fresh_library")
def test_a_library_of_another_abi_version_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    if _library.library_path() is None:
        pytest.skip("the kernel library was not built")
    monkeypatch.setattr(_library, "ABI_VERSION", _library.ABI_VERSION + 1)
    needs = f"has ABI version {_library.ABI_VERSION - 1} where this bnn_runtime needs"
    with pytest.warns(RuntimeWarning, match=f"{needs} {_library.ABI_VERSION}.*NumPy reference"):
        assert kernels.isa() == "numpy"
    _falls_back_to_numpy()


@needs_compiler
@pytest.mark.usefixtures("fresh_library")
def test_a_library_without_an_abi_version_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A library built before the interface had a version (it lacks bnn_abi_version)."""
    source = tmp_path / "old.c"
    source.write_text("int bnn_isa_supported(int isa) { return isa == 0; }\n")
    library = tmp_path / "old.so"
    subprocess.run(
        [COMPILER, "-shared", "-fPIC", "-o", str(library), str(source)],
        check=True,
        capture_output=True,
    )
    monkeypatch.setattr(_library, "library_path", lambda: library)
    with pytest.warns(RuntimeWarning, match="has no ABI version where this bnn_runtime needs"):
        assert _library.load() is None
    _falls_back_to_numpy()
