"""The archive's files on disk: the spares, directory durability, the atomic move.

The data set is written exactly as the peer sent it, after the PS3.10 header
of :mod:`stellarpacs.part10`, into a :class:`~stellarpacs.fileio.TempFile`
(plain buffered writes, cheap enough for the event loop). Everything here that
can block for milliseconds (fsync, rename, directory fsync) is a separate
blocking function that the caller runs in a worker thread, once per instance.
Reading a header back is :mod:`header`. Nothing here needs pydicom.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import deque
from pathlib import Path

from stellarpacs.fileio import new_file, remove_quietly

__all__ = [
    "DirSync",
    "Spares",
    "clean_tmp",
    "fsync_dir",
    "install",
]

log = logging.getLogger(__name__)


class Spares:
    """Empty files made ahead of need, so that a C-STORE's temporary file costs no inode.

    Creating a file allocates an inode, which on our ext4 VM takes 0.05 to 0.4
    ms of kernel time; ``begin()`` runs on the event loop in the path of every
    C-STORE. ``fill()`` creates the files in a worker thread, ``take()`` hands
    one out (``TempFile.adopt`` renames it into ``tmp/``). They live in their
    own folder because ``tmp/`` holds only transfers; any left by a crash are
    removed by :func:`clean_tmp` at start-up. Thread-safe: a deque's append and
    popleft are atomic.
    """

    def __init__(self, directory: Path, *, keep: int) -> None:
        self.directory = directory
        self.keep = keep
        self._ready: deque[tuple[Path, int]] = deque()

    @property
    def low(self) -> bool:
        """Half or fewer are ready: time to ``fill()`` (in batches, to hand off less often)."""
        return len(self._ready) <= self.keep // 2

    def take(self) -> tuple[Path, int] | None:
        """A spare (path, open descriptor), or None when none is ready."""
        try:
            return self._ready.popleft()
        except IndexError:
            return None

    def fill(self) -> None:
        """Blocking: create spares until ``keep`` are ready."""
        while len(self._ready) < self.keep:
            self._ready.append(new_file(self.directory))

    def drain(self) -> None:
        """Blocking: close and remove the spares not taken."""
        while (spare := self.take()) is not None:
            os.close(spare[1])
            remove_quietly(spare[0])


def clean_tmp(tmp_dir: Path) -> int:
    """Blocking: remove every leftover of an interrupted transfer (or spare); return how many."""
    removed = 0
    for entry in tmp_dir.iterdir():
        if entry.is_file() or entry.is_symlink():
            remove_quietly(entry)
            removed += 1
    return removed


# -- moving into place -------------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    """Make a directory's entries durable (a rename is durable only after this)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Flush:
    """Group commit state of one directory: renames counted, renames known durable."""

    __slots__ = ("done", "lock", "requested")

    def __init__(self) -> None:
        self.lock = threading.Lock()  # one fsync of the directory at a time
        self.requested = 0
        self.done = 0


class DirSync:
    """Creates directories below a base and makes their entries durable.

    A directory created by a concurrent commit may not be fsynced yet when another
    commit finds it; so a level is trusted only after *this* object fsynced its
    parent. ``sync_entries`` is a group commit: concurrent stores renaming into one
    series folder share its fsyncs. The memory is bounded: forgetting only costs a
    redundant fsync.
    """

    _LIMIT = 4096

    def __init__(self, base: Path, *, fsync: bool) -> None:
        self.base = base
        self.fsync = fsync
        self._durable: set[Path] = set()
        self._flushes: dict[Path, _Flush] = {}
        self._mutex = threading.Lock()

    def ensure(self, directory: Path) -> None:
        """Blocking: ``directory`` (below ``base``) exists and its entry is durable."""
        if directory in self._durable or directory == self.base:
            return
        self.ensure(directory.parent)
        with contextlib.suppress(FileExistsError):
            directory.mkdir()
        if self.fsync:
            fsync_dir(directory.parent)
        if len(self._durable) >= self._LIMIT:
            self._durable.clear()
        self._durable.add(directory)

    def sync_entries(self, directory: Path) -> None:
        """Blocking: every entry renamed into ``directory`` before this call is durable.

        Each caller takes a ticket after its rename; an fsync that began after
        the ticket was taken covers that rename, so a caller that finds one
        done (it waited for the fsync in progress) returns without its own.
        """
        if not self.fsync:
            return
        with self._mutex:
            flush = self._flushes.get(directory)
            if flush is None:
                if len(self._flushes) >= self._LIMIT:
                    self._flushes.clear()
                flush = self._flushes[directory] = _Flush()
            flush.requested += 1
            ticket = flush.requested
        with flush.lock:
            if flush.done >= ticket:
                return
            with self._mutex:
                covered = flush.requested
            fsync_dir(directory)
            flush.done = covered


def install(src: Path, dest: Path, dirs: DirSync) -> None:
    """Blocking: atomically move a complete file to ``dest`` and make the move durable.

    ``os.replace`` overwrites a file already there; the caller has made sure that
    such a file is an unacknowledged orphan of a crash, not an instance we know.
    If the move cannot be made durable, the moved file is removed again (no index
    row points at it), so that a failure leaves nothing in the tree.
    """
    dirs.ensure(dest.parent)
    os.replace(src, dest)
    try:
        dirs.sync_entries(dest.parent)
    except BaseException:
        remove_quietly(dest)
        raise
