"""PS3.10 files: the meta header, the temporary file, the spares, the atomic move.

The data set is written exactly as the peer sent it; this module only puts a
PS3.10 preamble and File Meta Information (PS3.10 7.1) in front of it. Writes
to the temporary file are plain buffered writes (cheap enough for the event
loop); everything that can block for milliseconds (fsync, rename, directory
fsync) is a separate blocking function that the caller runs in a worker
thread, once per instance. Reading a header back is :mod:`header`; this module
needs no pydicom, so the SCU side can write files with it too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import struct
import threading
from collections import deque
from pathlib import Path
from typing import BinaryIO

from stellarpacs.errors import DIMSEError

__all__ = [
    "CANNOT_UNDERSTAND",
    "DirSync",
    "Spares",
    "TempFile",
    "UnreadableDataSet",
    "clean_tmp",
    "encode_file_meta",
    "fsync_dir",
    "install",
    "remove_quietly",
]

log = logging.getLogger(__name__)

CANNOT_UNDERSTAND = 0xC000  # PS3.4 Table B.2-1, "Error: Cannot understand"
PREAMBLE = bytes(128)  # PS3.10 7.1: 128 zero bytes, then "DICM"
PREFIX = b"DICM"
_WRITE_BUFFER = 256 * 1024


class UnreadableDataSet(DIMSEError):
    """The bytes are not a data set we can store or walk; answered with C000 (PS3.4 B.2.3).

    Raised by :mod:`header` for what pydicom cannot parse, and here for a meta
    value too long for its element; it lives here so that this module needs
    no pydicom.
    """

    def __init__(self, message: str) -> None:
        super().__init__(CANNOT_UNDERSTAND, message)


# -- File Meta Information, Explicit VR Little Endian (PS3.10 7.1, PS3.5 7.1.2) ---------------


def _element(elem: int, vr: bytes, value: bytes) -> bytes:
    """One group 0002 element; OB uses the 4-byte length form (PS3.5 Table 7.1-1)."""
    if vr == b"OB":
        return struct.pack("<HH2sHI", 0x0002, elem, vr, 0, len(value)) + value
    if len(value) > 0xFFFE:
        raise UnreadableDataSet(f"(0002,{elem:04X}) is too long for the file meta")
    return struct.pack("<HH2sH", 0x0002, elem, vr, len(value)) + value


def _padded(value: str, pad: bytes) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + pad if len(raw) % 2 else raw


def encode_file_meta(
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    implementation_class_uid: str,
    implementation_version_name: str,
    source_ae: str,
) -> bytes:
    """Preamble, ``DICM`` and group 0002 with its group length, ready to precede the data set.

    UIDs are padded with NUL, text with a space (PS3.5 6.2). Values come from the
    DIMSE command and the association, not from the data set (PS3.10 7.1).
    """
    body = b"".join(
        (
            _element(0x0001, b"OB", b"\x00\x01"),
            _element(0x0002, b"UI", _padded(sop_class_uid, b"\0")),
            _element(0x0003, b"UI", _padded(sop_instance_uid, b"\0")),
            _element(0x0010, b"UI", _padded(transfer_syntax_uid, b"\0")),
            _element(0x0012, b"UI", _padded(implementation_class_uid, b"\0")),
            _element(0x0013, b"SH", _padded(implementation_version_name, b" ")),
            _element(0x0016, b"AE", _padded(source_ae, b" ")) if source_ae else b"",
        )
    )
    group_length = _element(0x0000, b"UL", struct.pack("<I", len(body)))
    return PREAMBLE + PREFIX + group_length + body


# -- the temporary file ------------------------------------------------------------------------


class TempFile:
    """A file being received under ``tmp/``: buffered writes, one fsync at the end."""

    def __init__(self, path: Path, fp: BinaryIO, header_size: int) -> None:
        self.path = path
        self._fp = fp
        self.header_size = header_size
        self.size = 0

    @classmethod
    def create(cls, tmp_dir: Path, header: bytes) -> TempFile:
        """Open a fresh temporary file and write ``header`` (preamble + meta) into it.

        Created with mode 0666 minus the umask (not mkstemp's 0600): the stored
        file is meant to be readable like any other local file (1.3 statement).
        """
        path, fd = _new_file(tmp_dir)
        return cls._opened(path, fd, header)

    @classmethod
    def adopt(cls, spare: tuple[Path, int], tmp_dir: Path, header: bytes) -> TempFile:
        """Like ``create``, from a spare made by :class:`Spares`: one rename, no new inode."""
        spare_path, fd = spare
        path = tmp_dir / spare_path.name
        try:
            os.rename(spare_path, path)
        except BaseException:
            os.close(fd)
            remove_quietly(spare_path)
            raise
        return cls._opened(path, fd, header)

    @classmethod
    def _opened(cls, path: Path, fd: int, header: bytes) -> TempFile:
        try:
            fp = os.fdopen(fd, "wb", buffering=_WRITE_BUFFER)
        except BaseException:
            os.close(fd)
            remove_quietly(path)
            raise
        temp = cls(path, fp, len(header))
        try:
            temp.write(header)
        except BaseException:
            temp.abandon()
            raise
        return temp

    @property
    def data_size(self) -> int:
        """Bytes of data set written after the meta header."""
        return self.size - self.header_size

    def write(self, data: bytes) -> None:
        """Buffered write into the page cache; never an fsync."""
        self._fp.write(data)
        self.size += len(data)

    def finish(self, *, fsync: bool) -> None:
        """Blocking: flush, fsync (when asked) and close."""
        self._fp.flush()
        if fsync:
            os.fsync(self._fp.fileno())
        self._fp.close()

    def abandon(self) -> None:
        """Blocking: close without caring about unwritten bytes, then remove the file."""
        with contextlib.suppress(OSError):
            self._fp.close()
        remove_quietly(self.path)


def _new_file(directory: Path) -> tuple[Path, int]:
    """Blocking: a new empty file with a random name, opened for writing."""
    path = directory / f"rx-{secrets.token_hex(12)}.part"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    return path, os.open(path, flags, 0o666)


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
            self._ready.append(_new_file(self.directory))

    def drain(self) -> None:
        """Blocking: close and remove the spares not taken."""
        while (spare := self.take()) is not None:
            os.close(spare[1])
            remove_quietly(spare[0])


def remove_quietly(path: Path) -> None:
    """Remove ``path``; a file that is already gone, or cannot go, is only logged."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc)


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
