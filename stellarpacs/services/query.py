"""Query/Retrieve FIND SCP (PS3.4 C.4.1): Patient Root, Study Root, Patient/Study Only.

Each C-FIND-RQ's identifier is decoded in the transfer syntax of its
presentation context, checked against the model's hierarchy and turned into one
query that the archive's catalog runs (``storage.api.InstanceCatalog``). Every
match is sent as it is read, as a Pending response (FF00, or FF01 when a key
could not be matched, PS3.4 C.4.1.1.4) whose identifier holds the requested
keys, the Query/Retrieve Level and our Retrieve AE Title, in the request's
transfer syntax.  The operation ends with Success (0000), Cancel (FE00) after a
C-CANCEL-RQ, or one failure: A700 when the index cannot be read, A900 when the
identifier does not fit the model, C001 when it cannot be processed
(:data:`FIND_FAILURE`), 0122 when the command names a SOP class its context
does not carry (PS3.7 C.5).  A failure ends the operation, never the
association.

Specific Character Set of responses (PS3.4 C.4.1.1.3.2): the request's when
it can encode every returned value, else ISO_IR 192 (UTF-8) when some value
is not ASCII, else none.  The index holds values decoded to Unicode, so a
name stored in Latin-1 is returned to a UTF-8 request and the reverse.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from contextlib import aclosing
from types import MappingProxyType
from typing import Final

from pydicom.charset import python_encoding
from pydicom.dataset import Dataset

from stellarpacs.aio.protocols import AssociationLike
from stellarpacs.audit import Auditor
from stellarpacs.config import Config
from stellarpacs.datasets import encode_dataset
from stellarpacs.dimse.commands import CFindRQ, CFindRSP, Message
from stellarpacs.dimse.events import DatasetSink, Incoming
from stellarpacs.dimse.status import Status
from stellarpacs.errors import AssociationAborted, DIMSEError
from stellarpacs.logtext import printable
from stellarpacs.services.auditing import audit_query
from stellarpacs.services.offload import parse_off_loop
from stellarpacs.storage.api import (
    InstanceArchive,
    InstanceCatalog,
    InvalidQuery,
    Match,
    Query,
    QueryProblem,
    StorageUnavailable,
    decode_identifier,
    parse_query,
)
from stellarpacs.uids import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, QR_FIND_MODELS
from stellarpacs.ul.negotiation import PresentationContext, Role

__all__ = [
    "FIND_FAILURE",
    "FIND_TRANSFER_SYNTAXES",
    "FindService",
    "encode_identifier",
    "response_charset",
]

log = logging.getLogger("stellarpacs.query")

#: The 1.3 statement (3.1.3.4.4) accepts Implicit VR Little Endian only; Explicit VR
#: Little Endian is also accepted now, second in preference.
FIND_TRANSFER_SYNTAXES: Final = (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN)
_UTF8: Final = "ISO_IR 192"
UNABLE_TO_PROCESS: Final = 0xC001  # PS3.4 Table C.4-1, range C000-CFFF
FIND_FAILURE: Final[Mapping[QueryProblem, int]] = MappingProxyType(
    {
        QueryProblem.MODEL: Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
        QueryProblem.HIERARCHY: Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
        QueryProblem.VALUE: UNABLE_TO_PROCESS,
    }
)
"""The C-FIND status for each problem of an identifier (PS3.4 Table C.4-1)."""
#: Matches sent between two yields to the event loop, so that a C-CANCEL-RQ is read
#: (and other associations served) while a long result streams out.
_YIELD_EVERY: Final = 8


# -- identifiers -----------------------------------------------------------------------------


def response_charset(match: Match, requested: tuple[str, ...]) -> str | None:
    """The Specific Character Set for a response identifier (PS3.4 C.4.1.1.3.2).

    The request's set when it can carry every value, ISO_IR 192 when some
    value is not ASCII and the request's set cannot, otherwise none.
    """
    wide = [t for t in match.texts() if not t.isascii()]
    request_set = "\\".join(requested) if requested else None
    if not wide:
        return request_set
    if len(requested) > 1:
        return request_set  # code extensions: pydicom switches sets with escapes
    codec = python_encoding.get(requested[0]) if requested else None
    if codec is not None and _encodable(wide, codec):
        return request_set
    return _UTF8


def _encodable(texts: list[str], codec: str) -> bool:
    try:
        for text in texts:
            text.encode(codec)
    except UnicodeError:
        return False
    return True


def encode_identifier(ds: Dataset, transfer_syntax: str, charset: str | None = None) -> bytes:
    """``ds`` as data set bytes in ``transfer_syntax`` (Implicit or Explicit VR LE).

    Requests and tests use it; responses are written by :meth:`Match.encode`.
    """
    if charset:
        ds.SpecificCharacterSet = charset.split("\\") if "\\" in charset else charset
    return encode_dataset(ds, transfer_syntax)


def _comment(text: str) -> str:
    """An Error Comment (0000,0902): LO, so ASCII here and at most 64 characters."""
    return text.encode("ascii", "replace").decode("ascii")[:64]


# -- the service ----------------------------------------------------------------------------------


class FindService:
    """C-FIND SCP over an archive's index, for the three FIND models."""

    requests: tuple[type[Message], ...] = (CFindRQ,)
    roles: Mapping[str, Role] = MappingProxyType({})
    abstract_syntaxes: Mapping[str, tuple[str, ...]] = MappingProxyType(
        {uid: FIND_TRANSFER_SYNTAXES for uid in QR_FIND_MODELS}
    )

    def __init__(
        self,
        archive: InstanceArchive,
        config: Config,
        *,
        catalog: InstanceCatalog | None = None,
        auditor: Auditor | None = None,
    ) -> None:
        self.config = config
        self.catalog = catalog if catalog is not None else archive.catalog()
        self.auditor = auditor if auditor is not None else Auditor()

    async def close(self) -> None:
        """Close the catalog's connection to the index."""
        await self.catalog.close()

    def sink(
        self, association: AssociationLike, context: PresentationContext, command: Message
    ) -> DatasetSink | None:
        return None  # an identifier is small: gathered in memory

    async def handle(self, association: AssociationLike, incoming: Incoming) -> None:
        request = incoming.command
        assert isinstance(request, CFindRQ)
        started = time.monotonic()
        try:
            status, comment, offending, sent = await self._find(association, incoming, request)
        finally:
            association.cancelled.discard(request.message_id)
        response = CFindRSP(
            message_id_being_responded_to=request.message_id,
            status=status,
            affected_sop_class_uid=request.affected_sop_class_uid,
            error_comment=_comment(comment) if comment else None,
            offending_element=offending,
        )
        await association.send(incoming.context.context_id, response)
        if self.auditor.enabled:
            audit_query(self.auditor, association, incoming, status, sent)
        log.info(
            "%s C-FIND %s: %d matches, status 0x%04X%s in %.1f ms",
            printable(association.calling_ae_title), printable(request.affected_sop_class_uid),
            sent, status, f" ({printable(comment)})" if comment else "",
            1000 * (time.monotonic() - started),
        )  # fmt: skip

    async def _find(
        self, association: AssociationLike, incoming: Incoming, request: CFindRQ
    ) -> tuple[int, str | None, tuple[int, ...] | None, int]:
        """Run the query; (final status, error comment, offending tags, matches sent)."""
        context = incoming.context
        if request.affected_sop_class_uid != context.abstract_syntax:
            comment = "SOP class not negotiated on this presentation context"
            return Status.SOP_CLASS_NOT_SUPPORTED, comment, None, 0
        progress = _Progress()
        try:
            query = await parse_off_loop(
                incoming.dataset,
                lambda: parse_query(
                    decode_identifier(incoming.dataset, context.transfer_syntax),
                    request.affected_sop_class_uid,
                    fold_names=self.config.case_insensitive_person_names,
                ),
            )
            await self._send_matches(association, context, request, query, progress)
        except InvalidQuery as error:
            return FIND_FAILURE[error.problem], str(error), error.tags or None, progress.sent
        except StorageUnavailable as error:  # the index cannot be read: out of resources
            log.warning("C-FIND refused: %s", error)
            return Status.OUT_OF_RESOURCES, str(error), None, progress.sent
        except DIMSEError as error:
            log.warning("C-FIND refused: %s", printable(error))
            return error.status, str(error), None, progress.sent
        except AssociationAborted:
            raise
        except Exception as error:
            log.exception("C-FIND failed")
            return UNABLE_TO_PROCESS, f"unable to process: {error}", None, progress.sent
        if request.message_id in association.cancelled:
            return Status.CANCEL, None, None, progress.sent
        return Status.SUCCESS, None, None, progress.sent

    async def _send_matches(
        self,
        association: AssociationLike,
        context: PresentationContext,
        request: CFindRQ,
        query: Query,
        progress: _Progress,
    ) -> None:
        """One Pending response per match, as read; stops at a C-CANCEL (PS3.4 C.4.1.3.1)."""

        def cancelled() -> bool:
            return request.message_id in association.cancelled

        status = Status.PENDING if query.all_supported else Status.PENDING_WARNING
        found = self.catalog.find(query, retrieve_ae_title=self.config.ae_title, stop=cancelled)
        async with aclosing(found) as matches:
            async for match in matches:
                charset = response_charset(match, query.charset)
                data = match.encode(context.transfer_syntax, charset)
                pending = CFindRSP(
                    message_id_being_responded_to=request.message_id,
                    status=status,
                    affected_sop_class_uid=request.affected_sop_class_uid,
                    has_dataset=True,
                )
                await association.send(context.context_id, pending, data)
                progress.sent += 1
                if progress.sent % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # let the transport read a C-CANCEL-RQ
                if cancelled():
                    return


class _Progress:
    """Matches sent so far, kept when the operation ends in a failure."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = 0
