"""Storage SCU: send PS3.10 files (or data sets) over an association (PS3.4 B).

Used by ``python -m stellarpacs store``, by users scripting tests of other
archives, and by the server itself for C-MOVE and C-GET sub-operations.

Files are not loaded: the data set bytes after the file meta are streamed
from disk in chunks, so they leave exactly as stored.  Only when the peer did
not accept the file's own transfer syntax is the data set decoded and written
again in an accepted uncompressed one (decompressing with pydicom and the
pylibjpeg plugins when needed); the 1.3 statement asks to propose the stored
transfer syntax first (3.1.3.5.4).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from stellarpacs.aio.protocols import AssociationLike, ClientLike
from stellarpacs.aio.scu.contexts import ProposedContext
from stellarpacs.datasets import encode_dataset
from stellarpacs.dimse.commands import CStoreRQ, CStoreRSP
from stellarpacs.dimse.matching import Mismatch, expect_response
from stellarpacs.errors import AssociationAborted, DIMSEError
from stellarpacs.fileio import INSTANCE_SUFFIX, read_file_meta, uid_component
from stellarpacs.part10 import encode_file_meta
from stellarpacs.uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    IMPLICIT_VR_LITTLE_ENDIAN,
)
from stellarpacs.ul.negotiation import PresentationContext

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = [
    "StoreItem",
    "StoreResult",
    "dataset_file",
    "propose_contexts",
    "scan_file",
    "scan_paths",
    "send_all",
    "send_item",
    "store_paths",
    "transcode",
]

UNCOMPRESSED = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class StoreItem:
    """One PS3.10 file to send: what its meta says and where its data set starts."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    dataset_offset: int
    size: int


@dataclass(frozen=True, slots=True)
class StoreResult:
    """The outcome of one C-STORE sub-operation or file; ``status`` None if never sent."""

    item: StoreItem
    status: int | None
    error: str = ""


def scan_file(path: Path) -> StoreItem:
    """Blocking: read a file's meta (not its data set); ValueError if it is not PS3.10."""
    meta, offset = read_file_meta(path, preamble=False)
    sop_class, sop_instance = meta.sop_class_uid, meta.sop_instance_uid
    syntax = meta.transfer_syntax_uid
    if not (sop_class and sop_instance and syntax):
        raise ValueError("not a DICOM PS3.10 file (no usable file meta)")
    return StoreItem(path, sop_class, sop_instance, syntax, offset, path.stat().st_size)


def scan_paths(paths: Iterable[Path]) -> tuple[list[StoreItem], list[tuple[Path, str]]]:
    """Blocking: the files under ``paths`` (folders recursively), and the ones skipped with why."""
    items: list[StoreItem] = []
    skipped: list[tuple[Path, str]] = []
    for root in paths:
        candidates = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in candidates:
            try:
                items.append(scan_file(path))
            except (OSError, ValueError) as error:
                skipped.append((path, str(error)))
    return items, skipped


def _class_contexts(sop_class: str, syntaxes: Sequence[str]) -> list[ProposedContext]:
    """One context per stored syntax, then the uncompressed fallback unless both are there.

    A stored uncompressed syntax gets its own context too: offered together
    with the other, the peer would choose, and an instance stored in Implicit
    VR would be re-encoded to Explicit VR for nothing.
    """
    contexts = [ProposedContext(sop_class, (syntax,)) for syntax in syntaxes]
    if not set(UNCOMPRESSED) <= set(syntaxes):
        contexts.append(ProposedContext(sop_class, UNCOMPRESSED))
    return contexts


def _context_count(syntaxes: set[str]) -> int:
    return len(syntaxes) + (0 if set(UNCOMPRESSED) <= syntaxes else 1)


def propose_contexts(items: Sequence[StoreItem]) -> list[ProposedContext]:
    """Contexts for ``items``: per SOP class each stored syntax alone, and an uncompressed fallback.

    Each stored syntax can then be accepted on its own, so that files leave
    as stored (1.3 statement 3.1.3.5.4); the fallback offering Explicit and
    Implicit VR Little Endian catches a peer that refuses the stored one.
    PS3.8 allows 128 contexts (ValueError above; :func:`store_paths` splits).
    """
    wanted: dict[str, list[str]] = {}
    for item in items:
        syntaxes = wanted.setdefault(item.sop_class_uid, [])
        if item.transfer_syntax_uid not in syntaxes:
            syntaxes.append(item.transfer_syntax_uid)
    contexts = [c for sop, syntaxes in wanted.items() for c in _class_contexts(sop, syntaxes)]
    if len(contexts) > 128:
        raise ValueError(
            f"{len(contexts)} presentation contexts needed, 128 at most: send in smaller groups"
        )
    return contexts


def _pick_context(
    association: AssociationLike, item: StoreItem, scp_role_only: bool = False
) -> PresentationContext | None:
    exact = None
    fallback = None
    for context in association.contexts.values():
        if context.abstract_syntax != item.sop_class_uid:
            continue
        if scp_role_only and not context.scp_role:
            continue
        if context.transfer_syntax == item.transfer_syntax_uid:
            exact = context
            break
        if fallback is None and context.transfer_syntax in UNCOMPRESSED:
            fallback = context
    return exact or fallback


def _open_at(path: Path, offset: int) -> tuple[BinaryIO, bytes]:
    """Blocking: open ``path``, seek to ``offset`` and read the first chunk."""
    file = path.open("rb")
    try:
        file.seek(offset)
        return file, file.read(CHUNK)
    except BaseException:
        file.close()
        raise


async def _stream_file(
    association: AssociationLike, context_id: int, request: CStoreRQ, item: StoreItem
) -> str:
    """Send ``request`` with the file's data set read 1 MiB at a time; "" or why not sent.

    The file is opened and its first chunk read before the command goes out,
    so a file that vanished fails alone. A read error after that leaves a
    message cut short: the association is aborted (PS3.8 7.3.1).
    """
    try:
        file, first = await asyncio.to_thread(_open_at, item.path, item.dataset_offset)
    except OSError as error:
        return f"cannot read {item.path}: {error}"

    async def chunks() -> AsyncIterator[bytes]:
        chunk = first
        while chunk:
            yield chunk
            if len(chunk) < CHUNK:
                break  # a short read of a regular file is its end
            try:
                chunk = await asyncio.to_thread(file.read, CHUNK)
            except OSError as error:
                association.abort()
                raise AssociationAborted(f"cannot read {item.path}: {error}") from error

    try:
        await association.send_stream(context_id, request, chunks())
    finally:
        file.close()
    return ""


#: Files whose data set is at most this big are read whole, ahead of their turn.
READ_AHEAD_ITEM = 256 * 1024
#: Bytes read ahead at most (one batch in one worker thread hop).
READ_AHEAD_BUDGET = 4 * 1024 * 1024


def _read_batch(batch: Sequence[StoreItem]) -> list[bytes | None]:
    """Blocking: the data sets of ``batch``; None for a file that cannot be read."""
    out: list[bytes | None] = []
    for item in batch:
        try:
            with item.path.open("rb") as file:
                file.seek(item.dataset_offset)
                out.append(file.read())
        except OSError:
            out.append(None)
    return out


def _batches(items: Sequence[StoreItem]) -> list[tuple[list[StoreItem], bool]]:
    """Consecutive small items grouped under the budget; (items, read ahead?)."""
    batches: list[tuple[list[StoreItem], bool]] = []
    current: list[StoreItem] = []
    size = 0
    for item in items:
        length = item.size - item.dataset_offset
        if length > READ_AHEAD_ITEM:
            if current:
                batches.append((current, True))
                current, size = [], 0
            batches.append(([item], False))
            continue
        if current and size + length > READ_AHEAD_BUDGET:
            batches.append((current, True))
            current, size = [], 0
        current.append(item)
        size += length
    if current:
        batches.append((current, True))
    return batches


async def read_ahead(
    items: Sequence[StoreItem],
) -> AsyncGenerator[tuple[StoreItem, bytes | None], None]:
    """``items`` with their data set bytes, read one batch ahead in a worker thread.

    While one batch is being sent, the next is read: a study of many small
    instances costs one thread hop per few megabytes, not one per file, and
    the disk read overlaps the network. A large file (or an unreadable one)
    comes with None and is streamed from disk by :func:`send_item`.
    """
    batches = _batches(items)

    def start(index: int) -> asyncio.Future[list[bytes | None]] | None:
        if index >= len(batches) or not batches[index][1]:
            return None
        return asyncio.ensure_future(asyncio.to_thread(_read_batch, batches[index][0]))

    upcoming = start(0)
    try:
        for index, (batch, _) in enumerate(batches):
            current, upcoming = upcoming, start(index + 1)
            data = await current if current is not None else [None] * len(batch)
            for item, payload in zip(batch, data, strict=True):
                yield item, payload
    finally:
        if upcoming is not None:
            upcoming.cancel()


def transcode(path: Path, transfer_syntax: str) -> bytes:
    """Blocking: the data set of ``path`` (no file meta) in an uncompressed ``transfer_syntax``."""
    import pydicom

    ds = pydicom.dcmread(path, force=True)
    if ds.file_meta.TransferSyntaxUID.is_compressed and "PixelData" in ds:
        ds.decompress(generate_instance_uid=False)  # the same instance, only re-encoded
    return encode_dataset(ds, transfer_syntax)


async def send_item(
    association: AssociationLike,
    item: StoreItem,
    *,
    dimse_timeout: float = 60.0,
    move_originator: tuple[str, int] | None = None,
    scp_role_only: bool = False,
    data: bytes | None = None,
) -> StoreResult:
    """C-STORE one file; the stored bytes when the syntax fits, else a transcoded copy.

    ``data`` is the file's data set when already read (:func:`read_ahead`);
    without it the file is streamed from disk. ``scp_role_only`` restricts
    the choice to contexts on which the peer took the SCP role by role
    selection: C-GET sub-operations (PS3.4 C.4.3.3).
    """
    context = _pick_context(association, item, scp_role_only)
    if context is None:
        return StoreResult(item, None, "no accepted presentation context for its SOP class")
    request = CStoreRQ(
        message_id=association.next_message_id(),
        affected_sop_class_uid=item.sop_class_uid,
        affected_sop_instance_uid=item.sop_instance_uid,
        move_originator_ae_title=move_originator[0] if move_originator else None,
        move_originator_message_id=move_originator[1] if move_originator else None,
    )
    if context.transfer_syntax == item.transfer_syntax_uid and data is not None:
        await association.send(context.context_id, request, data)
    elif context.transfer_syntax == item.transfer_syntax_uid:
        problem = await _stream_file(association, context.context_id, request, item)
        if problem:
            return StoreResult(item, None, problem)
    else:
        try:
            dataset = await asyncio.to_thread(transcode, item.path, context.transfer_syntax)
        except Exception as error:  # pydicom raises many kinds for undecodable pixel data
            return StoreResult(item, None, f"cannot convert to {context.transfer_syntax}: {error}")
        await association.send(context.context_id, request, dataset)
    return await _await_response(association, request, item, dimse_timeout)


async def _await_response(
    association: AssociationLike, request: CStoreRQ, item: StoreItem, dimse_timeout: float
) -> StoreResult:
    try:
        async with asyncio.timeout(dimse_timeout or None):
            incoming = await association.receive()
    except TimeoutError:
        association.abort()
        return StoreResult(item, None, f"no C-STORE-RSP within {dimse_timeout} s")
    other_id = DIMSEError(0xC000, "C-STORE-RSP answers another message ID")
    other = DIMSEError(0xC000, f"unexpected answer to C-STORE: {incoming!r}")
    response = expect_response(
        request, incoming, CStoreRSP, lambda why: other_id if why is Mismatch.MESSAGE_ID else other
    )
    return StoreResult(item, response.status, response.error_comment or "")


async def send_all(
    association: AssociationLike,
    items: Sequence[StoreItem],
    *,
    dimse_timeout: float = 60.0,
    on_result: Callable[[StoreResult], None] | None = None,
) -> list[StoreResult]:
    """C-STORE ``items`` one after the other over one association.

    When the association ends midway, the file that was being sent and those
    after it are returned as failed (status None), not raised.
    """
    results: list[StoreResult] = []

    def record(result: StoreResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    async with contextlib.aclosing(read_ahead(items)) as prepared:
        async for item, data in prepared:
            try:
                record(await send_item(association, item, dimse_timeout=dimse_timeout, data=data))
            except AssociationAborted as error:
                for rest in items[len(results) :]:
                    record(StoreResult(rest, None, f"association aborted: {error}"))
                break
    return results


def dataset_file(ds: Dataset, folder: Path, transfer_syntax: str | None = None) -> Path:
    """Blocking: ``ds`` as a PS3.10 file in ``folder``, ready for :func:`scan_file`.

    Encoded in ``transfer_syntax``, else in its ``file_meta`` Transfer Syntax
    UID; an encapsulated syntax needs pixel data already encapsulated in it
    (PS3.5 A.4). Deflated syntaxes are refused (ValueError), as is a data set
    without SOP Class and SOP Instance UIDs.
    """
    from pydicom.uid import UID

    meta = getattr(ds, "file_meta", None)
    syntax = transfer_syntax or (meta.get("TransferSyntaxUID") if meta is not None else None)
    if not syntax:
        raise ValueError("no transfer syntax: give one, or set file_meta.TransferSyntaxUID")
    uid = UID(str(syntax))
    if uid.is_deflated:
        raise ValueError(f"cannot send a data set in a deflated transfer syntax ({uid})")
    sop_class, sop_instance = ds.get("SOPClassUID"), ds.get("SOPInstanceUID")
    if not sop_class or not sop_instance:
        raise ValueError("the data set has no SOP Class UID or SOP Instance UID")
    body = encode_dataset(ds, str(uid))
    header = encode_file_meta(
        sop_class_uid=str(sop_class),
        sop_instance_uid=str(sop_instance),
        transfer_syntax_uid=str(uid),
        implementation_class_uid=IMPLEMENTATION_CLASS_UID,
        implementation_version_name=IMPLEMENTATION_VERSION_NAME,
        source_ae="",
    )
    path = folder / f"{uid_component(str(sop_instance))}{INSTANCE_SUFFIX}"
    path.write_bytes(header + body)
    return path


def _groups(items: Sequence[StoreItem], limit: int = 128) -> list[list[StoreItem]]:
    """Split ``items`` so that the contexts of each group fit in one A-ASSOCIATE-RQ."""
    groups: list[list[StoreItem]] = []
    current: list[StoreItem] = []
    seen: dict[str, set[str]] = {}
    count = 0
    for item in items:
        before = seen.get(item.sop_class_uid, set())
        after = before | {item.transfer_syntax_uid}
        grown = count - (_context_count(before) if before else 0) + _context_count(after)
        if current and grown > limit:
            groups.append(current)
            current, seen = [], {}
            after = {item.transfer_syntax_uid}
            grown = _context_count(after)
        current.append(item)
        seen[item.sop_class_uid] = after
        count = grown
    if current:
        groups.append(current)
    return groups


async def store_paths(
    items: Sequence[StoreItem],
    connect_association: Callable[[list[ProposedContext]], Awaitable[ClientLike]],
    *,
    on_result: Callable[[StoreResult], None] | None = None,
) -> list[StoreResult]:
    """Send ``items`` over as few associations as their contexts allow (128 per RQ).

    ``connect_association`` opens one association for a list of contexts.  A
    file that makes the peer abort counts as failed; the rest of its group
    goes on over a new association.
    """
    results: list[StoreResult] = []

    def record(result: StoreResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    for group in _groups(items):
        contexts = propose_contexts(group)
        remaining = list(group)
        while remaining:
            client = await connect_association(contexts)
            sent = 0
            async with client, contextlib.aclosing(read_ahead(remaining)) as prepared:
                async for item, data in prepared:
                    sent += 1
                    try:
                        result = await send_item(
                            client.association, item, dimse_timeout=client.dimse_timeout, data=data
                        )
                    except AssociationAborted as error:
                        record(StoreResult(item, None, f"association aborted: {error}"))
                        break
                    record(result)
            remaining = remaining[sent:]
    return results
