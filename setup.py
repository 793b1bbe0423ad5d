"""The compiled part of the package: the binary kernel library of bnn.runtime.

Everything else (metadata, packages, dependencies) is in pyproject.toml. The library is
plain C loaded through ctypes, built with -O3 and POSIX threads; no -march flag, since
per-function target attributes and run-time CPU dispatch make one binary run on every
CPU. If it cannot be built, the package still installs and bnn.runtime falls back to
its NumPy reference (with a warning).
"""

from setuptools import Extension, setup

SOURCES = [
    "bnn/runtime/_kernels.c",
    "bnn/runtime/_kernels_threads.c",
    "bnn/runtime/_kernels_conv.c",
    "bnn/runtime/_kernels_float.c",
    "bnn/runtime/_kernels_portable.c",
    "bnn/runtime/_kernels_avx2.c",
    "bnn/runtime/_kernels_avx512.c",
]
FLAGS = ["-O3", "-ffp-contract=off", "-fno-trapping-math", "-fvisibility=hidden", "-pthread"]

setup(
    ext_modules=[
        Extension(
            "bnn.runtime._libkernels",
            sources=SOURCES,
            depends=["bnn/runtime/_kernels.h", "bnn/runtime/_kernels_pool.h"],
            extra_compile_args=FLAGS,
            extra_link_args=["-pthread"],
            optional=True,
        )
    ],
)
