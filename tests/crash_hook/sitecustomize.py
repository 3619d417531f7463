"""Test-only: makes OpenCV's decoding crash or hang on marked files, in every process.

Put this folder on ``PYTHONPATH`` and set ``ENGINE_TEST_CRASH_ON`` (and/or ``ENGINE_TEST_HANG_ON``)
to a byte string: Python imports this module at start-up in the engine's process and in its
decode workers, and OpenCV's reader then dies by a real segmentation fault (a read of address 0)
on any file holding the first marker, and sleeps for an hour on one holding the second, as a
decoder crashing or hanging in native code would. Nothing changes without the variables.
"""

import os

_CRASH = os.environ.get("ENGINE_TEST_CRASH_ON", "").encode()
_HANG = os.environ.get("ENGINE_TEST_HANG_ON", "").encode()

if _CRASH or _HANG:
    import ctypes
    import time

    import engine.decoders

    _real_opencv = engine.decoders._opencv

    def _faulty_opencv(data, page, with_alpha):
        raw = data.tobytes()
        if _CRASH and _CRASH in raw:
            ctypes.string_at(0)  # SIGSEGV
        if _HANG and _HANG in raw:
            time.sleep(3600)
        return _real_opencv(data, page, with_alpha)

    engine.decoders._opencv = _faulty_opencv
