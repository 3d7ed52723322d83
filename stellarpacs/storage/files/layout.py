"""Where things live under a storage root.

Every path component made from a UID goes through
:func:`~stellarpacs.fileio.uid_component`, so that no UID, however malformed,
can leave the root, and two different UIDs never share a file.

Layout::

    <root>/index.sqlite3                      the index (plus -wal / -shm)
    <root>/tmp/                               files being received; never instances
    <root>/spare/                             empty files made ahead of need (see durable.Spares)
    <root>/studies/<study>/<series>/<sop>.dcm one PS3.10 file per instance
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from stellarpacs.fileio import INSTANCE_SUFFIX, uid_component

__all__ = ["Layout", "instance_relpath"]


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
