"""Local PS3.10 files that both the archive and the SCUs write and read.

Neither side owns these: the archive receives C-STOREs into a :class:`TempFile`
and names its files with :func:`uid_component`; the C-GET receiver of the SCU
does the same in a plain folder, and the storage SCU reads the meta of the
files it sends with :func:`read_file_meta`. Keeping them here lets ``aio``
write files without importing the storage package, and ``storage`` without
importing the network.

A UID that reaches us comes from the peer and may be anything: ``../../etc``,
an absolute path, 10 kB long, empty, with NUL bytes or non-ASCII letters. A
UID is used *verbatim* as a file name only when it has the shape of a real UID
(PS3.5 9.1: digits and dots, at most 64 characters, no empty component).
Anything else becomes ``x`` + the SHA-256 of its UTF-8 bytes: it cannot hold a
separator or a dot-dot, and it cannot collide with a verbatim UID, which
always starts with a digit. So no UID can leave its folder, and two different
UIDs never share a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
from pathlib import Path
from typing import BinaryIO, Final

from stellarpacs.part10 import FileMeta, file_meta_reader

__all__ = [
    "INSTANCE_SUFFIX",
    "TempFile",
    "new_file",
    "read_file_meta",
    "remove_quietly",
    "uid_component",
]

log = logging.getLogger(__name__)

INSTANCE_SUFFIX: Final = ".dcm"
_UID_SHAPE: Final = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_UID_MAX: Final = 64  # PS3.5 9.1
_WRITE_BUFFER: Final = 256 * 1024
_READ_CHUNK: Final = 64 * 1024  # a file meta is a few hundred bytes: one read, nearly always


def uid_component(uid: str) -> str:
    """One path component for ``uid``; see the module docstring for why it is safe."""
    if len(uid) <= _UID_MAX and _UID_SHAPE.fullmatch(uid):
        return uid
    digest = hashlib.sha256(uid.encode("utf-8", "surrogatepass")).hexdigest()
    return "x" + digest


def read_file_meta(path: Path, *, preamble: bool = True) -> tuple[FileMeta, int]:
    """Blocking: the file meta of ``path`` and where its data set starts (PS3.10 7.1).

    Reads only the header. Raises :class:`~stellarpacs.part10.Part10Error`
    when it is not one, OSError when the file cannot be read.
    """
    reader = file_meta_reader(preamble=preamble)
    with path.open("rb") as fp:
        try:
            wanted = next(reader)
            while True:
                wanted = reader.send(fp.read(max(wanted, _READ_CHUNK)))
        except StopIteration as done:
            result: tuple[FileMeta, int] = done.value
            return result


def new_file(directory: Path) -> tuple[Path, int]:
    """Blocking: a new empty file with a random name, opened for writing.

    Created with mode 0666 minus the umask (not mkstemp's 0600): a stored file
    is meant to be readable like any other local file (1.3 statement).
    """
    path = directory / f"rx-{secrets.token_hex(12)}.part"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    return path, os.open(path, flags, 0o666)


def remove_quietly(path: Path) -> None:
    """Remove ``path``; a file that is already gone, or cannot go, is only logged."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc)


class TempFile:
    """A file being received: buffered writes into the page cache, one fsync at the end."""

    def __init__(self, path: Path, fp: BinaryIO, header_size: int) -> None:
        self.path = path
        self._fp = fp
        self.header_size = header_size
        self.size = 0

    @classmethod
    def create(cls, directory: Path, header: bytes) -> TempFile:
        """Open a fresh file in ``directory`` (see :func:`new_file`) and write ``header``."""
        path, fd = new_file(directory)
        return cls._opened(path, fd, header)

    @classmethod
    def adopt(cls, spare: tuple[Path, int], directory: Path, header: bytes) -> TempFile:
        """Like ``create``, from a file made ahead by :func:`new_file`: one rename, no new inode."""
        spare_path, fd = spare
        path = directory / spare_path.name
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
        """Bytes of data set written after the header."""
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
