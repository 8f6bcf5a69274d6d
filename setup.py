"""Build the Cython kernels in kai/_fast.

Every ``kai/_fast/*.pyx`` becomes an extension module. Compiler directives are set
once here; ``KAI_CYTHON_DEBUG=1`` turns bounds checking, wraparound and
initialized-check on (one CI pass runs the tests with it). ``KAI_FAST_ONLY=a,b`` limits
the build to those modules (handy while one kernel is being written).
"""
import glob
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

ONLY = {m for m in os.environ.get("KAI_FAST_ONLY", "").split(",") if m}
DEBUG = os.environ.get("KAI_CYTHON_DEBUG", "") not in ("", "0")

directives = {
    "language_level": "3",
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "nonecheck": False,   # nogil methods of cdef classes cannot carry None checks
    "embedsignature": True,
}

extensions = [
    Extension(
        path[:-4].replace(os.sep, "."),
        [path],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O0", "-g"] if DEBUG else ["-O3"],
    )
    for path in sorted(glob.glob(os.path.join("kai", "_fast", "*.pyx")))
    if not ONLY or os.path.basename(path)[:-4] in ONLY
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives, build_dir="build/cython"))
