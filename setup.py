"""Build of the optional C extension ``shared._postproc`` (the rest of the metadata is in pyproject.toml).

The extension is optional: without a C compiler the install still succeeds and the service computes the same
figures with torch operations (``shared.postproc.available()`` says which path runs).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "shared._postproc",
            ["shared/_postproc.c"],
            # -fno-trapping-math lets the compiler vectorise the selects; no code here reads floating-point flags.
            # -fopenmp: rows are split over the OpenMP threads of the libgomp torch has loaded (same soname).
            extra_compile_args=["-O3", "-fno-trapping-math", "-fopenmp"],
            extra_link_args=["-fopenmp"],
            optional=True,
        )
    ]
)
