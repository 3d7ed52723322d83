"""The archive: files plus index, the one object the C-STORE handler talks to.

Theory of operation. ``begin()`` moves a spare empty file (made ahead of need
in a worker thread, see :class:`files.Spares`) into ``tmp/`` and writes the
PS3.10 preamble and meta; ``write()`` appends each data set fragment with a
buffered write on the event loop. ``commit()`` then makes ONE worker-thread
call (``_settle``): duplicate check on a plain read connection, fsync, header
read back, move into the tree and fsync of the directory entry (shared with
concurrent moves into the same folder). It hands the index row to the group
writer, which commits the rows of all concurrent commits in one transaction,
run as one call on the index's writer thread. Only after that commit is
Success returned (PS3.4 B.2.3), so the order on disk is always: file durable,
entry durable, row durable. A crash at any moment leaves either nothing in the
tree, an unindexed orphan that the next store of the same instance replaces,
or a complete indexed instance. ``open()`` removes what a crash left in
``tmp/`` and the spares.

Per small instance the time goes to the three syncs (file, directory, SQLite
WAL; about 1-2 ms on our VM disk), the header read (pydicom, about 0.2 ms;
repeated element values are converted once, see ``header._Memo``) and two
thread hand-offs (about 0.1-0.2 ms each).

Statuses follow the 1.3 conformance statement: 0xA702 (Refused: Out of
Resources, PS3.4 Table B.2-1 range A7xx) when we fail to store, 0xC000 when the
data set cannot be parsed at all. Nothing else is validated.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum, IntEnum
from pathlib import Path

from stellarpacs.errors import LocalProtocolError
from stellarpacs.logtext import printable
from stellarpacs.storage import files
from stellarpacs.storage.header import open_received
from stellarpacs.storage.index import Index, InstanceRecord, InstanceRow, row_from_dataset
from stellarpacs.storage.paths import Layout

__all__ = [
    "Archive",
    "Hook",
    "IncomingInstance",
    "InstanceRecord",
    "StoreOutcome",
    "StoreStatus",
    "StoredEvent",
]

log = logging.getLogger(__name__)

_SPARES = 8  # empty temporary files kept ready (refilled when half are used)


class StoreStatus(IntEnum):
    """C-STORE-RSP statuses this archive produces (PS3.4 Table B.2-1)."""

    SUCCESS = 0x0000
    OUT_OF_RESOURCES = 0xA702
    CANNOT_UNDERSTAND = 0xC000


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    """The answer to one C-STORE: status, the stored record, and why it failed."""

    status: int
    record: InstanceRecord | None
    duplicate: bool = False
    error_comment: str | None = None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """Told to notification hooks once an instance is durably stored and indexed."""

    record: InstanceRecord
    path: Path  # absolute


Hook = Callable[[StoredEvent], Awaitable[None]]


def _failure(exc: BaseException) -> StoreOutcome:
    """Map what went wrong to its status; the comment goes into Error Comment (0000,0902)."""
    if isinstance(exc, files.UnreadableDataSet):
        return StoreOutcome(StoreStatus.CANNOT_UNDERSTAND, None, error_comment=str(exc)[:64])
    return StoreOutcome(StoreStatus.OUT_OF_RESOURCES, None, error_comment=_comment(exc))


def _comment(exc: BaseException) -> str:
    # Error Comment is LO: at most 64 characters (PS3.7 C.4.2.1.2)
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"cannot store: {text or type(exc).__name__}"[:64]


@dataclass(frozen=True, slots=True)
class _Settled:
    """What the blocking part of a store did: found the instance known, or placed our file."""

    row: InstanceRow
    first: InstanceRecord | None
    dest: Path | None


class _State(Enum):
    OPEN = "open"
    DONE = "done"


class IncomingInstance:
    """One C-STORE data set on its way to disk.

    An I/O error while writing is remembered, not raised: the handler keeps
    feeding fragments and ``commit()`` answers A702.
    """

    def __init__(
        self,
        archive: Archive,
        *,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax_uid: str,
        calling_ae: str,
        temp: files.TempFile | None,
        failure: StoreOutcome | None,
    ) -> None:
        self._archive = archive
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid
        self.transfer_syntax_uid = transfer_syntax_uid
        self.calling_ae = calling_ae
        self.temp = temp
        self.failure = failure
        self._state = _State.OPEN

    def write(self, data: bytes) -> None:
        """Append one data set fragment (a buffered write, no fsync, no thread hop)."""
        if self._state is not _State.OPEN:
            raise LocalProtocolError("write() after commit() or discard()")
        if self.temp is None or self.failure is not None:
            return
        try:
            self.temp.write(data)
        except OSError as exc:
            log.error("writing %s failed: %s", self.temp.path, exc)
            self.failure = _failure(exc)

    async def commit(self) -> StoreOutcome:
        """Make the instance durable and indexed, then say how it went (PS3.4 B.2.3)."""
        self._close()
        return await self._archive._commit(self)

    async def discard(self) -> None:
        """The association ended mid-transfer: drop the temporary file."""
        if self._state is _State.DONE:
            return
        self._state = _State.DONE
        if self.temp is not None:
            await asyncio.to_thread(self.temp.abandon)

    def _close(self) -> None:
        if self._state is not _State.OPEN:
            raise LocalProtocolError("commit() after commit() or discard()")
        self._state = _State.DONE


class _GroupWriter:
    """One task that commits the rows of all waiting commits in one transaction.

    Rows queue up while a transaction runs; the next transaction takes them
    all, so N concurrent senders pay far fewer than N commits, and each caller
    still awaits the transaction that carries its own row.
    """

    def __init__(self, index: Index, *, max_batch: int = 512) -> None:
        self._index = index
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[InstanceRow, asyncio.Future[bool]] | None] = (
            asyncio.Queue()
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stellarpacs-index-writer")

    async def submit(self, row: InstanceRow) -> bool:
        """Queue ``row``; True once committed, False if the instance was already indexed."""
        if self._task is None or self._task.done():
            raise LocalProtocolError("the index writer is not running")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((row, future))
        return await future

    async def stop(self) -> None:
        """Commit what is queued, then end the task."""
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            batch, stop = self._take(await self._queue.get())
            if batch:
                await self._commit(batch)
            if stop:
                return

    def _take(
        self, first: tuple[InstanceRow, asyncio.Future[bool]] | None
    ) -> tuple[list[tuple[InstanceRow, asyncio.Future[bool]]], bool]:
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < self._max_batch and not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    async def _commit(self, batch: list[tuple[InstanceRow, asyncio.Future[bool]]]) -> None:
        try:
            added = await self._index.add([row for row, _ in batch])
        except Exception as exc:
            log.error("index transaction of %d rows failed: %s", len(batch), exc)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), ok in zip(batch, added, strict=True):
            if not future.done():
                future.set_result(ok)


class Archive:
    """Files + index; the only object the network handlers talk to.

    ``fsync=False`` trades durability for speed (tests, scratch archives).
    """

    def __init__(
        self,
        root: Path,
        *,
        fsync: bool = True,
        implementation_class_uid: str = "1.2.826.0.1.3680043.2.914",
        implementation_version_name: str = "StellarPACS_1.3",
    ) -> None:
        if len(implementation_version_name) > 16 or len(implementation_class_uid) > 64:
            raise ValueError("implementation version name > 16 or class UID > 64 characters")
        self.layout = Layout(Path(root))
        self.fsync = fsync
        self.implementation_class_uid = implementation_class_uid
        self.implementation_version_name = implementation_version_name
        self.index = Index(self.layout.index_path, durable=fsync)
        self.duplicates = 0
        self._dirs = files.DirSync(self.layout.root, fsync=fsync)
        self._writer = _GroupWriter(self.index)
        self._hooks: list[Hook] = []
        self._inflight: dict[str, asyncio.Task[StoreOutcome]] = {}
        self._commits: set[asyncio.Task[StoreOutcome]] = set()
        self._hook_tasks: set[asyncio.Task[None]] = set()
        self._spares = files.Spares(self.layout.spare_dir, keep=_SPARES)
        self._filling: asyncio.Future[None] | None = None
        self._open = False

    # -- life cycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the layout, remove crash leftovers in ``tmp/``, open the index."""
        removed = await asyncio.to_thread(self._prepare_layout)
        if removed:
            log.warning("removed %d unfinished transfers from %s", removed, self.layout.tmp_dir)
        await self.index.open()
        self._writer = _GroupWriter(self.index)
        self._writer.start()
        self._open = True
        self._refill()

    def _prepare_layout(self) -> int:
        self.layout.root.mkdir(parents=True, exist_ok=True)
        for directory in (self.layout.tmp_dir, self.layout.studies_dir, self.layout.spare_dir):
            self._dirs.ensure(directory)
        files.clean_tmp(self.layout.spare_dir)
        return files.clean_tmp(self.layout.tmp_dir)

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

    # -- storing ---------------------------------------------------------------------------

    def begin(
        self,
        *,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax_uid: str,
        calling_ae: str,
    ) -> IncomingInstance:
        """Open the temporary file of one C-STORE and write its PS3.10 preamble and meta.

        Failures are kept in the returned object and answered by ``commit()``.
        """
        if not self._open:
            raise LocalProtocolError("the archive is not open")
        temp: files.TempFile | None = None
        failure: StoreOutcome | None = None
        try:
            header = files.encode_file_meta(
                sop_class_uid=sop_class_uid,
                sop_instance_uid=sop_instance_uid,
                transfer_syntax_uid=transfer_syntax_uid,
                implementation_class_uid=self.implementation_class_uid,
                implementation_version_name=self.implementation_version_name,
                source_ae=calling_ae,
            )
            temp = self._temp_file(header)
        except (OSError, files.UnreadableDataSet) as exc:
            log.error("cannot begin storing %r: %s", printable(sop_instance_uid), printable(exc))
            failure = _failure(exc)
        return IncomingInstance(
            self,
            sop_class_uid=sop_class_uid,
            sop_instance_uid=sop_instance_uid,
            transfer_syntax_uid=transfer_syntax_uid,
            calling_ae=calling_ae,
            temp=temp,
            failure=failure,
        )

    def _temp_file(self, header: bytes) -> files.TempFile:
        """A spare moved into ``tmp/`` when one is ready (no inode to allocate), else a new one.

        The refill starts after the move: a file being created in the spare
        folder holds its lock, which the move would otherwise wait for.
        """
        spare = self._spares.take()
        try:
            if spare is not None:
                try:
                    return files.TempFile.adopt(spare, self.layout.tmp_dir, header)
                except OSError as exc:
                    log.debug("spare temporary file unusable (%s); creating one", exc)
            return files.TempFile.create(self.layout.tmp_dir, header)
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

    async def _commit(self, incoming: IncomingInstance) -> StoreOutcome:
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
        self, incoming: IncomingInstance, previous: asyncio.Task[StoreOutcome] | None
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
            return self._duplicate_found(settled.first)
        assert settled.dest is not None
        return await self._index_row(settled.row, temp, settled.dest)

    def _settle(self, incoming: IncomingInstance, temp: files.TempFile) -> _Settled:
        """Blocking, one worker-thread call: everything a store does before its index commit.

        Duplicate check, fsync, header read, move into the tree with its
        directory fsync. The check cannot race with a store of the same UID
        in this process: ``_inflight`` runs those one after the other. A
        duplicate is dropped here, without an fsync: it will never be kept.
        (Running the fsync on a second thread while this one parses was
        measured slower on our 2-core VM, so they run one after the other.)
        """
        first = self.index.get_instance_blocking(incoming.sop_instance_uid)
        temp.finish(fsync=self.fsync and first is None)
        row = self._row(incoming, temp)
        if first is not None:
            files.remove_quietly(temp.path)
            return _Settled(row, first, None)
        dest = self.layout.absolute(row.record.path)
        files.install(temp.path, dest, self._dirs)
        return _Settled(row, None, dest)

    @staticmethod
    def _row(incoming: IncomingInstance, temp: files.TempFile) -> InstanceRow:
        """Blocking: the index row of a received file, from its header read back."""
        dataset = open_received(
            temp.path, offset=temp.header_size, transfer_syntax_uid=incoming.transfer_syntax_uid
        )
        return row_from_dataset(
            dataset,
            sop_instance_uid=incoming.sop_instance_uid,
            sop_class_uid=incoming.sop_class_uid,
            transfer_syntax_uid=incoming.transfer_syntax_uid,
            size=temp.size,
            received_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            calling_ae=incoming.calling_ae,
        )

    async def _index_row(self, row: InstanceRow, temp: files.TempFile, dest: Path) -> StoreOutcome:
        """Commit the row of a placed file (group commit), then answer."""
        try:
            if await self._writer.submit(row):
                self._notify(StoredEvent(row.record, dest))
                return StoreOutcome(StoreStatus.SUCCESS, row.record)
            first = await self.index.get_instance(row.record.sop_instance_uid)
        except Exception as exc:
            return await self._fail(exc, temp, dest)
        return await self._duplicate(first, temp, dest)  # indexed meanwhile by someone else

    def _duplicate_found(self, first: InstanceRecord) -> StoreOutcome:
        """Ours was already removed in ``_settle``; the first one stays as it is."""
        self.duplicates += 1
        log.warning(
            "duplicate SOP Instance UID %r: keeping the first instance",
            printable(first.sop_instance_uid),
        )
        return StoreOutcome(StoreStatus.SUCCESS, first, duplicate=True)

    async def _duplicate(
        self, first: InstanceRecord | None, temp: files.TempFile, placed: Path | None
    ) -> StoreOutcome:
        """Keep the first instance; drop ours unless it already sits at the first one's path."""
        self.duplicates += 1
        mine = placed if placed is not None else temp.path
        if first is None or self.layout.absolute(first.path) != mine:
            await asyncio.to_thread(files.remove_quietly, mine)
        log.warning(
            "duplicate SOP Instance UID %r: keeping the first instance",
            printable(first.sop_instance_uid) if first else None,
        )
        return StoreOutcome(StoreStatus.SUCCESS, first, duplicate=True)

    async def _fail(
        self, exc: Exception, temp: files.TempFile, placed: Path | None
    ) -> StoreOutcome:
        """Answer the failure; remove our file, never one that an index row points at."""
        outcome = _failure(exc)
        if outcome.status == StoreStatus.OUT_OF_RESOURCES:
            log.error("storing failed (%s)", printable(exc), exc_info=not isinstance(exc, OSError))
        else:
            log.warning("refused a data set: %s", printable(exc))
        await asyncio.to_thread(temp.abandon)
        if placed is not None and not await self._indexed_or_unknown(placed):
            await asyncio.to_thread(files.remove_quietly, placed)
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
