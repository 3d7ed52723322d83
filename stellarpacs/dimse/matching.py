"""Which response answers which request (PS3.7 9.1.1.1, 9.3, 10.3): one rule, one check.

The association tags each response it receives with the outstanding
request it answers (:attr:`~stellarpacs.dimse.events.Incoming.answers`);
:func:`expect_response` reads that verdict for every operation, client or
server side, so none compares Message IDs by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from types import MappingProxyType
from typing import Final, TypeAlias, TypeVar

from stellarpacs.dimse.commands import (
    CEchoRQ,
    CEchoRSP,
    CFindRQ,
    CFindRSP,
    CGetRQ,
    CGetRSP,
    CMoveRQ,
    CMoveRSP,
    CStoreRQ,
    CStoreRSP,
    Message,
    NActionRQ,
    NActionRSP,
    NCreateRQ,
    NCreateRSP,
    NDeleteRQ,
    NDeleteRSP,
    NEventReportRQ,
    NEventReportRSP,
    NGetRQ,
    NGetRSP,
    NSetRQ,
    NSetRSP,
)
from stellarpacs.dimse.events import Incoming
from stellarpacs.dimse.status import StatusCategory, category

__all__ = [
    "RESPONSE_CLASSES",
    "Mismatch",
    "Request",
    "Response",
    "expect_response",
    "is_final",
]

Request: TypeAlias = (
    CEchoRQ
    | CStoreRQ
    | CFindRQ
    | CGetRQ
    | CMoveRQ
    | NEventReportRQ
    | NGetRQ
    | NSetRQ
    | NActionRQ
    | NCreateRQ
    | NDeleteRQ
)
"""The requests that carry a Message ID and expect a response (C-CANCEL-RQ does not)."""
Response: TypeAlias = (
    CEchoRSP
    | CStoreRSP
    | CFindRSP
    | CGetRSP
    | CMoveRSP
    | NEventReportRSP
    | NGetRSP
    | NSetRSP
    | NActionRSP
    | NCreateRSP
    | NDeleteRSP
)

RESPONSE_CLASSES: Final[Mapping[type[Message], type[Message]]] = MappingProxyType(
    {
        CEchoRQ: CEchoRSP,
        CStoreRQ: CStoreRSP,
        CFindRQ: CFindRSP,
        CGetRQ: CGetRSP,
        CMoveRQ: CMoveRSP,
        NEventReportRQ: NEventReportRSP,
        NGetRQ: NGetRSP,
        NSetRQ: NSetRSP,
        NActionRQ: NActionRSP,
        NCreateRQ: NCreateRSP,
        NDeleteRQ: NDeleteRSP,
    }
)
"""Request class -> the class of its response (PS3.7 9.3, 10.3)."""


def is_final(response: Response) -> bool:
    """Whether no more responses follow (anything but Pending, PS3.7 C.4.2 to C.4.4)."""
    return category(response.status) is not StatusCategory.PENDING


class Mismatch(Enum):
    """Why a message is not the response to a request."""

    NO_MESSAGE = "the association ended before a response"
    KIND = "not a response of the request's class"
    MESSAGE_ID = "a response to another request"


R = TypeVar("R")


def expect_response(
    request: Message,
    incoming: Incoming | None,
    kind: type[R],
    error: Callable[[Mismatch], Exception],
) -> R:
    """``incoming``'s command if it is the response to ``request``; else raise ``error(why)``.

    The association matched the response to its outstanding request when it
    arrived (:attr:`Incoming.answers`): here only the verdict is read, so
    every operation judges an answer the same way and raises its own error.
    """
    if incoming is None:
        raise error(Mismatch.NO_MESSAGE)
    command = incoming.command
    if not isinstance(command, kind):
        raise error(Mismatch.KIND)
    if incoming.answers is not request:
        raise error(Mismatch.MESSAGE_ID)
    return command
