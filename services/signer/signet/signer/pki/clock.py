"""The kernel's word on the local clock: ``adjtimex(2)`` read-only, as a `ClockReading`.

The only part of the time check that touches the system; `signet.signer.pki.timesource`
judges its readings (and tests inject their own `ClockReader`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

#: adjtimex(2) return values and status bits (linux/timex.h).
TIME_ERROR = 5
STA_UNSYNC = 0x0040
STA_CLOCKERR = 0x1000


@dataclass(frozen=True)
class ClockReading:
    """What the local clock's discipline says of itself."""

    synchronised: bool
    #: The kernel's estimated error (µs); None when not known.
    estimated_error_us: int | None
    #: Why it is not synchronised, in words (empty when it is).
    detail: str = ""


class ClockReader(Protocol):
    def read(self) -> ClockReading: ...


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _Timex(ctypes.Structure):
    """glibc's ``struct timex`` on LP64 Linux (x86_64, aarch64: the same layout, 208 bytes;
    ctypes adds the padding after each ``int`` that the C compiler does)."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    )


@dataclass(frozen=True)
class KernelStatus:
    """One read-only ``adjtimex`` answer, as the kernel gave it."""

    state: int
    status: int
    estimated_error_us: int
    maximum_error_us: int
    offset: int
    tai: int


class KernelClock:
    """The kernel's synchronisation status through ``adjtimex(2)`` (Linux, glibc, LP64)."""

    def __init__(self) -> None:
        self._adjtimex: Callable[[Any], int] | None = None
        if sys.platform.startswith("linux") and ctypes.sizeof(ctypes.c_long) == 8:
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            function = libc.adjtimex
            function.argtypes = (ctypes.POINTER(_Timex),)
            function.restype = ctypes.c_int
            self._adjtimex = function

    def kernel_status(self) -> KernelStatus:
        """The raw answer; OSError when the call fails, RuntimeError off Linux/LP64."""
        if self._adjtimex is None:
            raise RuntimeError("adjtimex(2) is read only on 64-bit Linux")
        timex = _Timex()  # modes = 0: read, never adjust
        state = self._adjtimex(ctypes.byref(timex))
        if state == -1:
            errno = ctypes.get_errno()
            raise OSError(errno, f"adjtimex failed (errno {errno})")
        return KernelStatus(
            state, timex.status, timex.esterror, timex.maxerror, timex.offset, timex.tai
        )

    def read(self) -> ClockReading:
        try:
            kernel = self.kernel_status()
        except (OSError, RuntimeError) as exc:
            return ClockReading(False, None, f"the kernel's clock status is unreadable: {exc}")
        if kernel.state == TIME_ERROR or kernel.status & (STA_UNSYNC | STA_CLOCKERR):
            return ClockReading(
                False,
                kernel.estimated_error_us,
                "the kernel reports the clock unsynchronised (no NTP daemon disciplines it, "
                "or it lost its servers)",
            )
        return ClockReading(True, kernel.estimated_error_us)
