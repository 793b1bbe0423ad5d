"""The compiled part of bnn-runtime: its binary kernel library.

Everything else (metadata, packages, dependencies) is in pyproject.toml. The library is
plain C loaded through ctypes, built with -O3 and POSIX threads; no -march flag, since
per-function target attributes and run-time CPU dispatch make one binary run on every
CPU. If it cannot be built, the package still installs and bnn_runtime falls back to
its NumPy reference (with a warning).
"""

from setuptools import Extension, setup

SOURCES = [
    "bnn_runtime/_kernels.c",
    "bnn_runtime/_kernels_threads.c",
    "bnn_runtime/_kernels_conv.c",
    "bnn_runtime/_kernels_float.c",
    "bnn_runtime/_kernels_float_avx512.c",
    "bnn_runtime/_kernels_portable.c",
    "bnn_runtime/_kernels_avx2.c",
    "bnn_runtime/_kernels_avx512.c",
    "bnn_runtime/_kernels_int8.c",
    "bnn_runtime/_kernels_int8_portable.c",
    "bnn_runtime/_kernels_int8_avx2.c",
    "bnn_runtime/_kernels_int8_avx512vnni.c",
]
HEADERS = [
    "bnn_runtime/include/bnn_runtime.h",
    "bnn_runtime/_kernels.h",
    "bnn_runtime/_kernels_pool.h",
    "bnn_runtime/_kernels_float.h",
    "bnn_runtime/_kernels_int8.h",
]
FLAGS = ["-O3", "-ffp-contract=off", "-fno-trapping-math", "-fvisibility=hidden", "-pthread"]

setup(
    ext_modules=[
        Extension(
            "bnn_runtime._libkernels",
            sources=SOURCES,
            depends=HEADERS,
            extra_compile_args=FLAGS,
            extra_link_args=["-pthread"],
            optional=True,
        )
    ],
)
