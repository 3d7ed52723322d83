"""Where things live under a storage root, and safe file names from UIDs.

A UID that reaches us comes from the peer and may be anything: ``../../etc``,
an absolute path, 10 kB long, empty, with NUL bytes or non-ASCII letters. A UID
is used *verbatim* as a path component only when it has the shape of a real
UID (PS3.5 9.1: digits and dots, at most 64 characters, no empty component).
Anything else becomes ``x`` + the SHA-256 of its UTF-8 bytes: it cannot hold a
separator or a dot-dot, and it cannot collide with a verbatim UID, which always
starts with a digit. So no UID can leave the root, and two different UIDs never
share a file.

Layout::

    <root>/index.sqlite3                      the index (plus -wal / -shm)
    <root>/tmp/                               files being received; never instances
    <root>/spare/                             empty files made ahead of need (see files.Spares)
    <root>/studies/<study>/<series>/<sop>.dcm one PS3.10 file per instance
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = [
    "INSTANCE_SUFFIX",
    "Layout",
    "instance_relpath",
    "uid_component",
]

INSTANCE_SUFFIX = ".dcm"
_UID_SHAPE = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_UID_MAX = 64  # PS3.5 9.1


def uid_component(uid: str) -> str:
    """One path component for ``uid``; see the module docstring for why it is safe."""
    if len(uid) <= _UID_MAX and _UID_SHAPE.fullmatch(uid):
        return uid
    digest = hashlib.sha256(uid.encode("utf-8", "surrogatepass")).hexdigest()
    return "x" + digest


def instance_relpath(study_uid: str, series_uid: str, sop_instance_uid: str) -> str:
    """The POSIX path of an instance's file, relative to the storage root."""
    parts = (
        Layout.STUDIES,
        uid_component(study_uid),
        uid_component(series_uid),
        uid_component(sop_instance_uid) + INSTANCE_SUFFIX,
    )
    return str(PurePosixPath(*parts))


@dataclass(frozen=True, slots=True)
class Layout:
    """The fixed places under one storage root."""

    root: Path

    STUDIES = "studies"
    TMP = "tmp"
    SPARE = "spare"
    INDEX = "index.sqlite3"

    @property
    def studies_dir(self) -> Path:
        return self.root / self.STUDIES

    @property
    def tmp_dir(self) -> Path:
        return self.root / self.TMP

    @property
    def spare_dir(self) -> Path:
        return self.root / self.SPARE

    @property
    def index_path(self) -> Path:
        return self.root / self.INDEX

    def absolute(self, relpath: str) -> Path:
        """The absolute path of an index ``path`` value (POSIX, relative to the root).

        Refuses a value that would lead outside the root, should an index row
        ever have been edited by hand.
        """
        parts = PurePosixPath(relpath).parts
        if not parts or parts[0] == "/" or ".." in parts or "\\" in relpath:
            raise ValueError(f"not a path inside the storage root: {relpath!r}")
        return self.root.joinpath(*parts)
