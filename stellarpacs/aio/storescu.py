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
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stellarpacs.aio.association import Association
from stellarpacs.aio.client import ClientAssociation, ProposedContext
from stellarpacs.dimse.commands import CStoreRQ, CStoreRSP
from stellarpacs.errors import AssociationAborted, DIMSEError
from stellarpacs.uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
)
from stellarpacs.ul.negotiation import PresentationContext

__all__ = [
    "StoreItem",
    "StoreResult",
    "propose_contexts",
    "scan_file",
    "scan_paths",
    "send_item",
    "store_paths",
]

UNCOMPRESSED = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
CHUNK = 1 << 20
_META_HEAD = 64 * 1024


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


def _meta_elements(head: bytes) -> tuple[dict[int, bytes], int]:
    """Walk the group 0002 elements (always Explicit VR LE, PS3.10 7.1); return them and the end."""
    offset = 132 if head[128:132] == b"DICM" else 0
    elements: dict[int, bytes] = {}
    while offset + 8 <= len(head):
        group, elem = struct.unpack_from("<HH", head, offset)
        if group != 0x0002:
            break
        vr = head[offset + 4 : offset + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR"):
            (length,) = struct.unpack_from("<I", head, offset + 8)
            start = offset + 12
        else:
            (length,) = struct.unpack_from("<H", head, offset + 6)
            start = offset + 8
        elements[elem] = head[start : start + length]
        offset = start + length
    return elements, offset


def _text(raw: bytes | None) -> str:
    return (raw or b"").rstrip(b"\x00 ").decode("ascii", "replace")


def scan_file(path: Path) -> StoreItem:
    """Blocking: read a file's meta (not its data set); ValueError if it is not PS3.10."""
    with path.open("rb") as file:
        head = file.read(_META_HEAD)
    try:
        elements, offset = _meta_elements(head)
    except struct.error:
        raise ValueError("truncated file meta") from None
    sop_class = _text(elements.get(0x0002))
    sop_instance = _text(elements.get(0x0003))
    syntax = _text(elements.get(0x0010))
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


def propose_contexts(items: Sequence[StoreItem]) -> list[ProposedContext]:
    """Contexts for ``items``: per SOP class its stored syntaxes, and an uncompressed fallback.

    PS3.8 allows 128 contexts; a SOP class with several stored syntaxes gets
    one context per syntax (so each may be accepted on its own) and one more
    offering Explicit and Implicit VR Little Endian.
    """
    wanted: dict[str, list[str]] = {}
    for item in items:
        syntaxes = wanted.setdefault(item.sop_class_uid, [])
        if item.transfer_syntax_uid not in syntaxes:
            syntaxes.append(item.transfer_syntax_uid)
    contexts: list[ProposedContext] = []
    for sop_class, syntaxes in wanted.items():
        for syntax in syntaxes:
            if syntax not in UNCOMPRESSED:
                contexts.append(ProposedContext(sop_class, (syntax,)))
        contexts.append(ProposedContext(sop_class, UNCOMPRESSED))
    if len(contexts) > 128:
        raise ValueError(
            f"{len(contexts)} presentation contexts needed, 128 at most: send in smaller groups"
        )
    return contexts


def _pick_context(
    association: Association, item: StoreItem, scp_role_only: bool = False
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


async def _file_chunks(path: Path, offset: int) -> AsyncIterator[bytes]:
    """The file's bytes from ``offset``, 1 MiB at a time, read in a worker thread."""
    file = await asyncio.to_thread(path.open, "rb")
    try:
        await asyncio.to_thread(file.seek, offset)
        while chunk := await asyncio.to_thread(file.read, CHUNK):
            yield chunk
    finally:
        file.close()


def transcode(path: Path, transfer_syntax: str) -> bytes:
    """Blocking: the data set of ``path`` (no file meta) in an uncompressed ``transfer_syntax``."""
    import pydicom
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    from pydicom.uid import UID

    ds = pydicom.dcmread(path, force=True)
    if ds.file_meta.TransferSyntaxUID.is_compressed and "PixelData" in ds:
        ds.decompress(generate_instance_uid=False)  # the same instance, only re-encoded
    target = UID(transfer_syntax)
    buffer = DicomBytesIO()
    buffer.is_implicit_VR = target.is_implicit_VR
    buffer.is_little_endian = target.is_little_endian
    write_dataset(buffer, ds)
    return buffer.getvalue()


async def send_item(
    association: Association,
    item: StoreItem,
    *,
    dimse_timeout: float = 60.0,
    move_originator: tuple[str, int] | None = None,
    scp_role_only: bool = False,
) -> StoreResult:
    """C-STORE one file; the stored bytes when the syntax fits, else a transcoded copy.

    ``scp_role_only`` restricts the choice to contexts on which the peer took
    the SCP role by role selection: C-GET sub-operations (PS3.4 C.4.3.3).
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
    if context.transfer_syntax == item.transfer_syntax_uid:
        await association.send_stream(
            context.context_id, request, _file_chunks(item.path, item.dataset_offset)
        )
    else:
        try:
            dataset = await asyncio.to_thread(transcode, item.path, context.transfer_syntax)
        except Exception as error:  # pydicom raises many kinds for undecodable pixel data
            return StoreResult(item, None, f"cannot convert to {context.transfer_syntax}: {error}")
        await association.send(context.context_id, request, dataset)
    return await _await_response(association, request, item, dimse_timeout)


async def _await_response(
    association: Association, request: CStoreRQ, item: StoreItem, dimse_timeout: float
) -> StoreResult:
    try:
        async with asyncio.timeout(dimse_timeout or None):
            incoming = await association.receive()
    except TimeoutError:
        association.abort()
        return StoreResult(item, None, f"no C-STORE-RSP within {dimse_timeout} s")
    if incoming is None or not isinstance(incoming.command, CStoreRSP):
        raise DIMSEError(0xC000, f"unexpected answer to C-STORE: {incoming!r}")
    response = incoming.command
    if response.message_id_being_responded_to != request.message_id:
        raise DIMSEError(0xC000, "C-STORE-RSP answers another message ID")
    return StoreResult(item, response.status, response.error_comment or "")


def _groups(items: Sequence[StoreItem], limit: int = 128) -> list[list[StoreItem]]:
    """Split ``items`` so that the contexts of each group fit in one A-ASSOCIATE-RQ."""
    groups: list[list[StoreItem]] = []
    current: list[StoreItem] = []
    seen: dict[str, set[str]] = {}
    count = 0
    for item in items:
        syntaxes = seen.get(item.sop_class_uid)
        extra = 1 if syntaxes is None else 0
        compressed = item.transfer_syntax_uid not in UNCOMPRESSED
        if compressed and (syntaxes is None or item.transfer_syntax_uid not in syntaxes):
            extra += 1
        if current and count + extra > limit:
            groups.append(current)
            current, seen, count = [], {}, 0
            extra = 2 if compressed else 1
        current.append(item)
        count += extra
        bucket = seen.setdefault(item.sop_class_uid, set())
        if compressed:
            bucket.add(item.transfer_syntax_uid)
    if current:
        groups.append(current)
    return groups


async def store_paths(
    items: Sequence[StoreItem],
    connect_association: Callable[[list[ProposedContext]], Awaitable[ClientAssociation]],
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
            async with client:
                while remaining:
                    item = remaining.pop(0)
                    try:
                        result = await send_item(
                            client.association, item, dimse_timeout=client.dimse_timeout
                        )
                    except AssociationAborted as error:
                        record(StoreResult(item, None, f"association aborted: {error}"))
                        break
                    record(result)
    return results
