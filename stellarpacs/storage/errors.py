"""What storage raises: its own failures, which the services answer with DIMSE statuses.

Storage knows nothing of the wire. It says what went wrong (the index or the
disk cannot be used now, an instance is not there, an identifier does not
fit its information model and which tags are at fault, a data set cannot be
parsed) and each service chooses the status for its own response: the same
:class:`InvalidQuery` is A900 or C001 to C-FIND and A900 or C000 to C-MOVE.
A backend turns whatever its driver raises into :class:`StorageUnavailable`,
so no service ever sees ``sqlite3`` (or, later, ``asyncpg``) errors.

Every class here derives from :class:`~stellarpacs.errors.StellarPACSError`.
They are re-exported by :mod:`stellarpacs.storage.api`, where the services
take them from; they live in this leaf module so that the backends can raise
them without importing the API.
"""

from __future__ import annotations

from enum import Enum

from stellarpacs.errors import StellarPACSError

__all__ = [
    "InvalidQuery",
    "MismatchedDataSet",
    "NotFound",
    "QueryProblem",
    "SchemaTooNew",
    "StorageError",
    "StorageUnavailable",
    "UnreadableDataSet",
]


class StorageError(StellarPACSError):
    """Root of what storage raises about itself or what it was given."""


class StorageUnavailable(StorageError):
    """The index or the disk cannot be used now (not open, locked, full, failing).

    The message is the driver's or the system's own; the original error is the
    ``__cause__``.
    """


class NotFound(StorageError):
    """What was asked for is not in storage (or its record names no usable file)."""


class SchemaTooNew(StorageError):
    """The database was written by a newer StellarPACS; refuse rather than guess."""


class UnreadableDataSet(StorageError):
    """The bytes are not a data set we can store or walk (pydicom cannot parse them)."""


class MismatchedDataSet(UnreadableDataSet):
    """The data set names another SOP Class or Instance UID than its command (PS3.4 B.2.3).

    ``which`` is ``"class"`` or ``"instance"``.
    """

    def __init__(self, which: str, message: str) -> None:
        super().__init__(message)
        self.which = which


class QueryProblem(Enum):
    """What is wrong with a Q/R identifier (PS3.4 C.4.1.2.2, C.4.2.2.1).

    ``MODEL``: the request does not fit the information model at all (no
    identifier, not a model of this class, a missing or foreign Query/Retrieve
    Level). ``HIERARCHY``: the unique keys do not follow the model's hierarchy
    (a level above not given by a single value, a key below the level, a
    retrieve without its unique key). ``VALUE``: an identifier, a value or its
    character set cannot be read or matched.
    """

    MODEL = "does not fit the information model"
    HIERARCHY = "does not follow the hierarchy of the model"
    VALUE = "cannot be read"


class InvalidQuery(StorageError):
    """A C-FIND, C-MOVE or C-GET identifier we cannot run: what is wrong, and which tags."""

    def __init__(self, problem: QueryProblem, message: str, tags: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.problem = problem
        self.tags = tags
