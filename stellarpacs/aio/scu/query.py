"""Query SCU: the matches of a C-FIND as an async generator (PS3.4 C.4.1, PS3.7 9.1.2).

Leaving the loop early sends C-CANCEL-RQ (PS3.7 9.3.2.3) and reads on to
the final response, so the association can be used again.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable

from pydicom.dataset import Dataset

from stellarpacs.aio.protocols import ClientLike
from stellarpacs.datasets import decode_dataset, encode_dataset
from stellarpacs.dimse.commands import CCancelRQ, CFindRQ, CFindRSP, Priority
from stellarpacs.dimse.events import Incoming
from stellarpacs.dimse.matching import Mismatch, expect_response
from stellarpacs.dimse.status import ServiceClass, StatusCategory, category, describe
from stellarpacs.errors import DIMSEError

__all__ = ["find", "unexpected_answer"]


def unexpected_answer(operation: str, incoming: Incoming) -> Callable[[Mismatch], DIMSEError]:
    """The error of a message that does not answer a C-ECHO or C-FIND (0xC000)."""
    return lambda _: DIMSEError(0xC000, f"unexpected answer to {operation}: {incoming.command!r}")


async def find(
    client: ClientLike, model_uid: str, identifier: Dataset, *, priority: int = Priority.MEDIUM
) -> AsyncGenerator[Dataset, None]:
    """C-FIND: yield each match's identifier as its Pending response arrives.

    Ends after Success or Cancel; raises DIMSEError with the status of a
    failure.  Closing the generator before the final response cancels.
    """
    association = client.association
    context = association.context_for(model_uid)
    rq = CFindRQ(
        message_id=association.next_message_id(),
        affected_sop_class_uid=model_uid,
        priority=priority,
    )
    await association.send(
        context.context_id, rq, encode_dataset(identifier, context.transfer_syntax)
    )
    done = False
    try:
        while not done:
            incoming = await client.response()
            rsp = expect_response(rq, incoming, CFindRSP, unexpected_answer("C-FIND", incoming))
            kind = category(rsp.status)
            if kind is StatusCategory.PENDING:
                if incoming.dataset is not None:
                    yield decode_dataset(incoming.dataset, context.transfer_syntax)
                continue
            done = True
            if kind is StatusCategory.FAILURE:
                text = rsp.error_comment or describe(rsp.status, ServiceClass.FIND)
                raise DIMSEError(rsp.status, f"C-FIND failed, 0x{rsp.status:04X}: {text}")
    except GeneratorExit:
        if not done and association.is_established:
            await _cancel(client, context.context_id, rq)
        raise


async def _cancel(client: ClientLike, context_id: int, rq: CFindRQ) -> None:
    """C-CANCEL-RQ, then read until the SCP stops answering Pending (it answers Cancel)."""
    cancel = CCancelRQ(message_id_being_responded_to=rq.message_id)
    await client.association.send(context_id, cancel)
    while True:
        final = (await client.response()).command
        pending = isinstance(final, CFindRSP) and category(final.status) is StatusCategory.PENDING
        if not pending:
            return
