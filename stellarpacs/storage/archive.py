"""The archive: files plus index, the one object the C-STORE handler talks to.

Theory of operation. ``begin()`` moves a spare empty file (made ahead of need
in a worker thread, see :class:`durable.Spares`) into ``tmp/`` and writes the
PS3.10 preamble and meta (:mod:`stellarpacs.part10`); ``write()`` appends each
data set fragment with a buffered write on the event loop. ``commit()`` then
makes ONE worker-thread call (``_settle``): duplicate check on a plain read
connection, fsync, header read back, move into the tree and fsync of the
directory entry (shared with concurrent moves into the same folder). It hands
the index row to the group writer, which commits the rows of all concurrent
commits in one transaction, run as one call on the index's writer thread. Only
after that commit is Success returned (PS3.4 B.2.3), so the order on disk is
always: file durable, entry durable, row durable. A crash at any moment leaves
either nothing in the tree, an unindexed orphan that the next store of the same
instance replaces, or a complete indexed instance. ``open()`` removes what a
crash left in ``tmp/`` and the spares.

Per small instance the time goes to the three syncs (file, directory, SQLite
WAL; about 1-2 ms on our VM disk), the header read (pydicom, about 0.2 ms;
repeated element values are converted once, see ``header._Memo``) and two
thread hand-offs (about 0.1-0.2 ms each).

A store ends in a :class:`~stellarpacs.storage.records.StoreOutcome`:
``STORED``, ``NOT_STORED`` when the file or the index could not be written,
``UNREADABLE`` when the data set cannot be parsed at all or names other SOP
UIDs than its command (``mismatch``); a known UID with other content is a
``conflict`` (:mod:`~stellarpacs.storage.duplicates`). The service chooses the statuses.

Beside storing, the archive is what retrieve, storage commitment and C-FIND
look instances up in (:class:`~stellarpacs.storage.api.InstanceArchive`):
index failures reach them as
:class:`~stellarpacs.storage.errors.StorageUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from stellarpacs.errors import LocalProtocolError
from stellarpacs.fileio import TempFile, remove_quietly
from stellarpacs.logtext import printable
from stellarpacs.part10 import Part10Error, encode_file_meta
from stellarpacs.storage.duplicates import checked_policy, settle_known
from stellarpacs.storage.errors import NotFound
from stellarpacs.storage.files import durable
from stellarpacs.storage.files.header import check_sop_uids, open_received, row_from_dataset
from stellarpacs.storage.files.inflate import DEFAULT_MAX_INFLATED, InflationLimit
from stellarpacs.storage.files.layout import Layout
from stellarpacs.storage.incoming import IncomingFile
from stellarpacs.storage.index.catalog import SQLiteCatalog
from stellarpacs.storage.index.database import unavailable
from stellarpacs.storage.index.groupcommit import GroupWriter
from stellarpacs.storage.index.instances import SQLiteIndex
from stellarpacs.storage.outcomes import failure_outcome
from stellarpacs.storage.query.retrieval import RetrieveKeys
from stellarpacs.storage.records import (
    InstanceRecord,
    InstanceRow,
    StoredEvent,
    StoreOutcome,
    StoreResult,
)

__all__ = ["Archive", "Hook"]

log = logging.getLogger(__name__)

_SPARES = 8  # empty temporary files kept ready (refilled when half are used)

Hook = Callable[[StoredEvent], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Settled:
    """What the blocking part of a store did: found the instance known, or placed our file."""

    row: InstanceRow
    first: InstanceRecord | None
    dest: Path | None
    conflict: bool = False  # a known UID with other content (duplicates.settle_known)
    replaced: bool = False  # ... which replaced the stored instance, row and all


class Archive:
    """Files + index; the only object the network handlers talk to.

    ``fsync=False`` trades durability for speed (tests, scratch archives);
    ``duplicate_policy`` is ``keep``, ``reject`` or ``replace`` (see
    :mod:`~stellarpacs.storage.duplicates`).
    """

    def __init__(
        self,
        root: Path,
        *,
        fsync: bool = True,
        duplicate_policy: str = "keep",
        implementation_class_uid: str = "1.2.826.0.1.3680043.2.914",
        implementation_version_name: str = "StellarPACS_1.3",
        max_inflated_header: int = DEFAULT_MAX_INFLATED,
    ) -> None:
        if len(implementation_version_name) > 16 or len(implementation_class_uid) > 64:
            raise ValueError("implementation version name > 16 or class UID > 64 characters")
        self.duplicate_policy = checked_policy(duplicate_policy)
        self.layout = Layout(Path(root))
        self.fsync = fsync
        #: Bytes a deflated data set's header may inflate to (``max_inflated_header``).
        self.max_inflated_header = max_inflated_header
        self.implementation_class_uid = implementation_class_uid
        self.implementation_version_name = implementation_version_name
        self.index = SQLiteIndex(self.layout.index_path, durable=fsync)
        self.duplicates = 0
        self._dirs = durable.DirSync(self.layout.root, fsync=fsync)
        self._writer = GroupWriter(self.index)
        self._hooks: list[Hook] = []
        self._inflight: dict[str, asyncio.Task[StoreOutcome]] = {}
        self._commits: set[asyncio.Task[StoreOutcome]] = set()
        self._hook_tasks: set[asyncio.Task[None]] = set()
        self._spares = durable.Spares(self.layout.spare_dir, keep=_SPARES)
        self._filling: asyncio.Future[None] | None = None
        self._open = False

    # -- life cycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the layout, remove crash leftovers in ``tmp/``, open the index."""
        removed = await asyncio.to_thread(self._prepare_layout)
        if removed:
            log.warning("removed %d unfinished transfers from %s", removed, self.layout.tmp_dir)
        await self.index.open()
        self._writer = GroupWriter(self.index)
        self._writer.start()
        self._open = True
        self._refill()

    def _prepare_layout(self) -> int:
        self.layout.root.mkdir(parents=True, exist_ok=True)
        for directory in (self.layout.tmp_dir, self.layout.studies_dir, self.layout.spare_dir):
            self._dirs.ensure(directory)
        durable.clean_tmp(self.layout.spare_dir)
        return durable.clean_tmp(self.layout.tmp_dir)

    async def close(self, *, hook_timeout: float = 30.0) -> None:
        """Finish the commits in flight, give hooks ``hook_timeout`` s, close the index."""
        self._open = False
        while self._commits:
            await asyncio.wait(list(self._commits))
        await self._writer.stop()
        if self._filling is not None:
            await asyncio.wait([self._filling])
        await asyncio.to_thread(self._spares.drain)
        if self._hook_tasks:
            _, late = await asyncio.wait(list(self._hook_tasks), timeout=hook_timeout)
            for task in late:
                task.cancel()
        await self.index.close()

    async def drain(self) -> None:
        """Wait until every commit started so far and the hooks it triggered have finished."""
        while self._commits or self._hook_tasks:
            await asyncio.wait([*self._commits, *self._hook_tasks])

    async def __aenter__(self) -> Archive:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def add_hook(self, hook: Hook) -> None:
        """Call ``hook`` after each instance is durably stored; its failures are only logged."""
        self._hooks.append(hook)

    # -- looking up (storage.api.InstanceLookup) ------------------------------------------

    def check_available(self) -> None:
        """Raise StorageUnavailable unless the index is open (the server may open it late)."""
        self.index.check_open()

    async def get_instance(self, sop_instance_uid: str) -> InstanceRecord | None:
        """The record of one stored instance, None when it is not indexed."""
        with unavailable():
            return await self.index.get_instance(sop_instance_uid)

    async def instances_for(self, keys: RetrieveKeys) -> list[InstanceRecord]:
        """The stored instances a retrieve names, parents first (PS3.4 C.4.2.2.1)."""
        with unavailable():
            return await self.index.instances_for(keys)

    def file_path(self, record: InstanceRecord) -> Path:
        """The absolute path of a record's file; NotFound if it names none inside the root."""
        try:
            return self.layout.absolute(record.path)
        except ValueError as exc:
            raise NotFound(str(exc)) from exc

    def catalog(self) -> SQLiteCatalog:
        """A new C-FIND reader over this archive's index (its own connection, opened lazily)."""
        return SQLiteCatalog(self.layout.index_path)

    # -- storing ---------------------------------------------------------------------------

    def begin(
        self,
        *,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax_uid: str,
        calling_ae: str,
        check_uids: bool = False,
    ) -> IncomingFile:
        """Open the temporary file of one C-STORE and write its PS3.10 preamble and meta.

        Failures are kept in the returned object and answered by ``commit()``;
        ``check_uids``: see :meth:`~stellarpacs.storage.api.InstanceArchive.begin`.
        """
        if not self._open:
            raise LocalProtocolError("the archive is not open")
        temp: TempFile | None = None
        failure: StoreOutcome | None = None
        try:
            header = encode_file_meta(
                sop_class_uid=sop_class_uid,
                sop_instance_uid=sop_instance_uid,
                transfer_syntax_uid=transfer_syntax_uid,
                implementation_class_uid=self.implementation_class_uid,
                implementation_version_name=self.implementation_version_name,
                source_ae=calling_ae,
            )
            temp = self._temp_file(header)
        except (OSError, Part10Error) as exc:
            log.error("cannot begin storing %r: %s", printable(sop_instance_uid), printable(exc))
            failure = failure_outcome(exc)
        incoming = IncomingFile(
            self._commit,
            sop_class_uid=sop_class_uid,
            sop_instance_uid=sop_instance_uid,
            transfer_syntax_uid=transfer_syntax_uid,
            calling_ae=calling_ae,
            temp=temp,
            failure=failure,
        )
        incoming.check_uids = check_uids
        return incoming

    def _temp_file(self, header: bytes) -> TempFile:
        """A spare moved into ``tmp/`` when one is ready (no inode to allocate), else a new one.

        The refill starts after the move: a file being created in the spare
        folder holds its lock, which the move would otherwise wait for.
        """
        spare = self._spares.take()
        try:
            if spare is not None:
                try:
                    return TempFile.adopt(spare, self.layout.tmp_dir, header)
                except OSError as exc:
                    log.debug("spare temporary file unusable (%s); creating one", exc)
            return TempFile.create(self.layout.tmp_dir, header)
        finally:
            self._refill()

    def _refill(self) -> None:
        """Top the spares up in a worker thread when they run low, one refill at a time."""
        if self._spares.low and (self._filling is None or self._filling.done()):
            self._filling = asyncio.get_running_loop().run_in_executor(None, self._fill_spares)

    def _fill_spares(self) -> None:
        try:
            self._spares.fill()
        except OSError as exc:  # begin() creates its own file and reports the error
            log.debug("cannot prepare spare temporary files: %s", exc)

    async def _commit(self, incoming: IncomingFile) -> StoreOutcome:
        """Run the store as its own task, so a cancelled caller cannot leave it half done."""
        uid = incoming.sop_instance_uid
        previous = self._inflight.get(uid)
        task = asyncio.create_task(self._store(incoming, previous))
        self._inflight[uid] = task
        self._commits.add(task)
        task.add_done_callback(lambda t: self._forget(uid, t))
        return await asyncio.shield(task)

    def _forget(self, uid: str, task: asyncio.Task[StoreOutcome]) -> None:
        self._commits.discard(task)
        if self._inflight.get(uid) is task:
            del self._inflight[uid]

    async def _store(
        self, incoming: IncomingFile, previous: asyncio.Task[StoreOutcome] | None
    ) -> StoreOutcome:
        temp = incoming.temp
        if incoming.failure is not None or temp is None:
            if temp is not None:
                await asyncio.to_thread(temp.abandon)
            assert incoming.failure is not None
            return incoming.failure
        if previous is not None:  # the same SOP instance is being stored right now: wait
            await asyncio.wait([previous])
        try:
            settled = await asyncio.to_thread(self._settle, incoming, temp)
        except Exception as exc:
            return await self._fail(exc, temp, None)
        if settled.first is not None:
            return self._duplicate_found(settled.first, settled.conflict)
        assert settled.dest is not None
        if settled.replaced:
            record = settled.row.record
            self._notify(StoredEvent(record, settled.dest))
            return StoreOutcome(StoreResult.STORED, record, conflict=True, replaced=True)
        return await self._index_row(settled.row, temp, settled.dest)

    def _settle(self, incoming: IncomingFile, temp: TempFile) -> _Settled:
        """Blocking, one worker-thread call: everything a store does before its index commit.

        Duplicate check, fsync, header read, move into the tree with its
        directory fsync. The check cannot race with a store of the same UID
        in this process: ``_inflight`` runs those one after the other. A
        duplicate is dropped here, without an fsync: it will never be kept.
        (Running the fsync on a second thread while this one parses was
        measured slower on our 2-core VM, so they run one after the other.)
        """
        first = self.index.get_instance_blocking(incoming.sop_instance_uid)
        replacing = first is not None and self.duplicate_policy == "replace"
        temp.finish(fsync=self.fsync and (first is None or replacing))
        row = self._row(incoming, temp)
        if first is not None:
            known = settle_known(
                layout=self.layout, dirs=self._dirs, database=self.index.database,
                policy=self.duplicate_policy, row=row, first=first, temp=temp,
            )  # fmt: skip
            if known.replaced:
                return _Settled(row, None, known.dest, conflict=True, replaced=True)
            return _Settled(row, first, None, conflict=known.conflict)
        dest = self.layout.absolute(row.record.path)
        durable.install(temp.path, dest, self._dirs)
        return _Settled(row, None, dest)

    def _row(self, incoming: IncomingFile, temp: TempFile) -> InstanceRow:
        """Blocking: the index row of a received file, from its header read back.

        Raises :class:`MismatchedDataSet` when asked to and the SOP UIDs differ.
        """
        dataset = open_received(
            temp.path,
            offset=temp.header_size,
            transfer_syntax_uid=incoming.transfer_syntax_uid,
            max_inflated=self.max_inflated_header,
        )
        if incoming.check_uids:
            check_sop_uids(dataset, incoming.sop_class_uid, incoming.sop_instance_uid)
        return row_from_dataset(
            dataset,
            sop_instance_uid=incoming.sop_instance_uid,
            sop_class_uid=incoming.sop_class_uid,
            transfer_syntax_uid=incoming.transfer_syntax_uid,
            size=temp.size,
            received_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            calling_ae=incoming.calling_ae,
        )

    async def _index_row(self, row: InstanceRow, temp: TempFile, dest: Path) -> StoreOutcome:
        """Commit the row of a placed file (group commit), then answer."""
        try:
            if await self._writer.submit(row):
                self._notify(StoredEvent(row.record, dest))
                return StoreOutcome(StoreResult.STORED, row.record)
            first = await self.index.get_instance(row.record.sop_instance_uid)
        except Exception as exc:
            return await self._fail(exc, temp, dest)
        return await self._duplicate(first, temp, dest)  # indexed meanwhile by someone else

    def _duplicate_found(self, first: InstanceRecord, conflict: bool) -> StoreOutcome:
        """Ours was already removed in ``_settle``; the first one stays as it is."""
        self.duplicates += 1
        if not conflict:
            log.warning(
                "duplicate SOP Instance UID %r: keeping the first instance",
                printable(first.sop_instance_uid),
            )
            return StoreOutcome(StoreResult.STORED, first, duplicate=True)
        if self.duplicate_policy == "reject":
            comment = "SOP instance already stored with other content"
            return StoreOutcome(StoreResult.NOT_STORED, first, True, comment, conflict=True)
        return StoreOutcome(StoreResult.STORED, first, duplicate=True, conflict=True)

    async def _duplicate(
        self, first: InstanceRecord | None, temp: TempFile, placed: Path | None
    ) -> StoreOutcome:
        """Keep the first instance; drop ours unless it already sits at the first one's path."""
        self.duplicates += 1
        mine = placed if placed is not None else temp.path
        if first is None or self.layout.absolute(first.path) != mine:
            await asyncio.to_thread(remove_quietly, mine)
        log.warning(
            "duplicate SOP Instance UID %r: keeping the first instance",
            printable(first.sop_instance_uid) if first else None,
        )
        return StoreOutcome(StoreResult.STORED, first, duplicate=True)

    async def _fail(self, exc: Exception, temp: TempFile, placed: Path | None) -> StoreOutcome:
        """Answer the failure; remove our file, never one that an index row points at."""
        outcome = failure_outcome(exc)
        if outcome.result is StoreResult.NOT_STORED and not isinstance(exc, InflationLimit):
            log.error("storing failed (%s)", printable(exc), exc_info=not isinstance(exc, OSError))
        else:
            log.warning("refused a data set: %s", printable(exc))
        await asyncio.to_thread(temp.abandon)
        if placed is not None and not await self._indexed_or_unknown(placed):
            await asyncio.to_thread(remove_quietly, placed)
        return outcome

    async def _indexed_or_unknown(self, placed: Path) -> bool:
        relpath = placed.relative_to(self.layout.root).as_posix()
        try:
            return bool(await self.index.known_paths([relpath]))
        except Exception:
            return True  # cannot tell: leave it, a resend will replace it

    # -- hooks -----------------------------------------------------------------------------

    def _notify(self, event: StoredEvent) -> None:
        if not self._hooks:
            return
        task = asyncio.create_task(self._run_hooks(event, tuple(self._hooks)))
        self._hook_tasks.add(task)
        task.add_done_callback(self._hook_tasks.discard)

    @staticmethod
    async def _run_hooks(event: StoredEvent, hooks: tuple[Hook, ...]) -> None:
        for hook in hooks:
            try:
                await hook(event)
            except Exception:
                log.exception("storage hook %r failed for %s", hook, event.path)
