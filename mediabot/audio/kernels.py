"""The audio kernels mediabot's hot path calls, from the native module when there is one, else the numpy twin.

The choice is made once, at import: ``MEDIABOT_NO_NATIVE=1`` forces the numpy twin; otherwise
``mediabot.audio._native`` (built from ``native/`` by ``pip install``) is used if it imports and has every kernel.
:data:`IMPLEMENTATION` says which one runs (``"native"`` or ``"numpy"``); falling back without being asked to logs a
WARNING. Both implementations expose the same functions and :class:`Decimator` with the same results (the native
decimator is within 1 LSB of the twin's exactly rounded one); :class:`GoertzelBank` is shared (it only precomputes
arrays).
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType
from typing import TYPE_CHECKING

from mediabot.audio import _kernels_py
from mediabot.audio._kernels_py import FULL_SCALE, LEVEL_FLOOR_DBFS, GoertzelBank

__all__ = [
    "FULL_SCALE",
    "IMPLEMENTATION",
    "LEVEL_FLOOR_DBFS",
    "Decimator",
    "GoertzelBank",
    "downmix",
    "goertzel_power",
    "level_dbfs",
    "mix_saturating",
    "to_float",
    "to_int16",
]

logger = logging.getLogger(__name__)

_KERNELS = ("Decimator", "downmix", "goertzel_power", "level_dbfs", "mix_saturating", "to_float", "to_int16")
_FIX = "build it with `pip install -e .` (needs a C compiler and the Python headers; see native/README.md)"


def _select() -> tuple[ModuleType, str]:
    if os.environ.get("MEDIABOT_NO_NATIVE") == "1":
        logger.debug("MEDIABOT_NO_NATIVE=1: using the numpy audio kernels")
        return _kernels_py, "numpy"
    try:
        native = importlib.import_module("mediabot.audio._native")
    except ImportError as exc:
        logger.warning(
            "native audio kernels unavailable (%s): using the slower numpy twin; %s, or set MEDIABOT_NO_NATIVE=1",
            exc,
            _FIX,
        )
        return _kernels_py, "numpy"
    missing = [name for name in _KERNELS if not hasattr(native, name)]
    if missing:
        logger.warning(
            "native audio kernels are stale (no %s): using the slower numpy twin; %s", ", ".join(missing), _FIX
        )
        return _kernels_py, "numpy"
    return native, "native"


_impl, IMPLEMENTATION = _select()

if TYPE_CHECKING:
    # Both implementations share these signatures; type checkers read them from the twin.
    from mediabot.audio._kernels_py import (
        Decimator,
        downmix,
        goertzel_power,
        level_dbfs,
        mix_saturating,
        to_float,
        to_int16,
    )
else:
    Decimator = _impl.Decimator
    downmix = _impl.downmix
    mix_saturating = _impl.mix_saturating
    level_dbfs = _impl.level_dbfs
    goertzel_power = _impl.goertzel_power
    to_float = _impl.to_float
    to_int16 = _impl.to_int16
