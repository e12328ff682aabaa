"""Build the optional native audio kernels (``mediabot.audio._native``); the package metadata is in pyproject.toml.

``optional=True``: without a working C compiler the install still succeeds (setuptools prints a warning) and
:mod:`mediabot.audio.kernels` falls back to the numpy twin, logging a WARNING at import. See native/README.md.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mediabot.audio._native",
            sources=["native/audio_kernels.c"],
            depends=["native/decimator_kernel.h", "native/decimator_taps.h"],
            extra_compile_args=["-O3", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden", "-fno-trapping-math"],
            optional=True,
        )
    ]
)
