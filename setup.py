"""Build of the optional C extensions (the rest of the metadata is in pyproject.toml): ``shared._postproc``, the
CPU post-processing of the SLM's logits, and ``shared.blobs._bitpack``, the packing of ids in few bits.

Both are optional: without a C compiler the install still succeeds and the same figures and bytes come from
torch and numpy operations (``shared.postproc.available()`` and ``shared.blobs.bitpack.native()`` say which
path runs).
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
        ),
        Extension("shared.blobs._bitpack", ["shared/blobs/_bitpack.c"], extra_compile_args=["-O3"], optional=True),
    ]
)
