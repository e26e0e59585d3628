"""Notice changes to the installed licence file the moment they complete.

The watch is on the licence file's folder, not the file, because an atomic install
replaces the file (a rename) and an inotify watch on the old file would go with it.
Only completed changes wake the daemon: a rename into place (``IN_MOVED_TO``), a
close after writing (``IN_CLOSE_WRITE``) and a removal (``IN_DELETE``,
``IN_MOVED_FROM``). Plain writes (``IN_MODIFY``) are ignored, so a licence copied in
place is read once the copy closes, not halfway through.
"""

from __future__ import annotations

from pathlib import Path

import structlog
from inotify_simple import INotify, flags

log = structlog.get_logger(__name__)

_FILE_EVENTS = flags.CLOSE_WRITE | flags.MOVED_TO | flags.MOVED_FROM | flags.DELETE
_FOLDER_GONE = flags.DELETE_SELF | flags.MOVE_SELF | flags.IGNORED


class LicenceWatch:
    """An inotify watch on the folder of the licence file."""

    def __init__(self, licence_file: Path) -> None:
        self._inotify = INotify(nonblocking=True)
        self._name = licence_file.name
        self._folder = licence_file.parent
        self._watching = False
        self.ensure()

    def fileno(self) -> int:
        return int(self._inotify.fileno())

    @property
    def watching(self) -> bool:
        return self._watching

    def ensure(self) -> None:
        """(Re)establish the watch; a missing folder is retried at the next check."""
        if self._watching:
            return
        try:
            self._inotify.add_watch(self._folder, _FILE_EVENTS | _FOLDER_GONE)
        except OSError as exc:
            log.warning(
                "licence_watch_failed", folder=str(self._folder), reason=str(exc)
            )
            return
        self._watching = True
        log.debug("licence_watch_started", folder=str(self._folder))

    def changed(self) -> bool:
        """Drain pending events; whether any concerns the licence file."""
        relevant = False
        for event in self._inotify.read(timeout=0):
            if event.mask & _FOLDER_GONE:
                self._watching = False
                relevant = True
            elif event.name == self._name:
                relevant = True
        return relevant

    def close(self) -> None:
        self._inotify.close()
