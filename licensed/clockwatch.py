"""Notice when the wall clock is set, at once.

A ``timerfd`` armed on ``CLOCK_REALTIME`` with ``TFD_TIMER_CANCEL_ON_SET`` becomes
readable (its read fails with ``ECANCELED``) whenever the wall clock is set
discontinuously: by an administrator, by NTP stepping it, and, on current kernels,
on resume from suspend. The daemon selects on it and re-checks at once, so a clock
stepped past an expiry instant is enforced without waiting for the safety interval.

Python 3.11 has no ``os.timerfd_*``, so this calls libc through ctypes.

Limitations: where timerfd is unavailable the watch is off and the safety interval
alone bounds the delay; the daemon logs ``clock_watch_unavailable`` once.
"""

from __future__ import annotations

import ctypes
import errno
import os

_CLOCK_REALTIME = 0
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_TIMER_ABSTIME = 1
_TFD_TIMER_CANCEL_ON_SET = 2
_FAR_FUTURE = 2**62 // 10**9  # seconds: never expires in practice


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


class ClockWatch:
    """A file descriptor that turns readable when the wall clock is set."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.timerfd_create(_CLOCK_REALTIME, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self._fd: int = fd
        self._arm()

    def fileno(self) -> int:
        return self._fd

    def consume(self) -> bool:
        """After the fd turned readable: re-arm, and say whether the clock was set."""
        try:
            os.read(self._fd, 8)
        except OSError as exc:
            if exc.errno == errno.ECANCELED:
                self._arm()
                return True
            if exc.errno == errno.EAGAIN:
                return False
            raise
        return False

    def close(self) -> None:
        os.close(self._fd)

    def _arm(self) -> None:
        spec = _Itimerspec()
        spec.it_value.tv_sec = _FAR_FUTURE
        flags = _TFD_TIMER_ABSTIME | _TFD_TIMER_CANCEL_ON_SET
        if self._libc.timerfd_settime(self._fd, flags, ctypes.byref(spec), None) < 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
