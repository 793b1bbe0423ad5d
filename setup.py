"""The compiled part of the package: the binary kernel library of bnn.runtime.

Everything else (metadata, packages, dependencies) is in pyproject.toml. The library is
plain C loaded through ctypes, built with -O3 and OpenMP when the compiler has it; no
-march flag, since per-function target attributes and run-time CPU dispatch make one
binary run on every CPU. If it cannot be built, the package still installs and
bnn.runtime falls back to its NumPy reference (with a warning).
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SOURCES = [
    "bnn/runtime/_kernels.c",
    "bnn/runtime/_kernels_conv.c",
    "bnn/runtime/_kernels_portable.c",
    "bnn/runtime/_kernels_avx2.c",
    "bnn/runtime/_kernels_avx512.c",
]
FLAGS = ["-O3", "-ffp-contract=off", "-fvisibility=hidden"]
OPENMP = ["-fopenmp"]


class BuildKernels(build_ext):
    """Build with OpenMP, or without it (single-threaded) if the compiler lacks it."""

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception:  # any compiler failure: retry without OpenMP
            ext.extra_compile_args = [f for f in ext.extra_compile_args if f not in OPENMP]
            ext.extra_link_args = [f for f in ext.extra_link_args if f not in OPENMP]
            super().build_extension(ext)


setup(
    ext_modules=[
        Extension(
            "bnn.runtime._libkernels",
            sources=SOURCES,
            depends=["bnn/runtime/_kernels.h"],
            extra_compile_args=FLAGS + OPENMP,
            extra_link_args=OPENMP,
            optional=True,
        )
    ],
    cmdclass={"build_ext": BuildKernels},
)
