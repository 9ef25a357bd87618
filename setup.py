"""Build the proofs C extension: every C file in proofs/csrc is compiled into proofs._native.

The C core files have no Python.h; only proofs/csrc/binding.c talks to CPython. SIMD code
paths are selected at run time with __attribute__((target(...))), so one build runs on any
x86-64 CPU and the same sources build portable-only elsewhere.
"""

from glob import glob

from setuptools import Extension, setup

native = Extension(
    "proofs._native",
    sources=sorted(glob("proofs/csrc/*.c")),
    include_dirs=["proofs/csrc"],
    extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-fno-strict-aliasing"],
)

setup(ext_modules=[native])
