"""DIMSE messages cut into P-DATA-TF PDUs exactly as a test asks (PS3.8 9.3.5, Annex E).

:func:`~stellarpacs.dimse.fragments.fragment_message` cuts the way a
conformant sender does.  A test needs any cut: PDV sizes chosen one by one,
several PDVs in one PDU, the command and the data set in the same PDU.
"""

from __future__ import annotations

from collections.abc import Sequence

from stellarpacs.dimse.command_codec import encode_command
from stellarpacs.dimse.commands import Message
from stellarpacs.ul.pdus import PDataTF, PresentationDataValue

__all__ = ["Sizes", "cut", "message_pdus"]

#: PDV value sizes: one size for every fragment, or the sizes in turn (the last repeats).
Sizes = int | Sequence[int] | None


def cut(data: bytes, sizes: Sizes) -> list[bytes]:
    """``data`` in fragments of ``sizes``; None: one fragment.  Empty data gives one empty PDV."""
    if sizes is None or not data:
        return [data]
    plan = [sizes] if isinstance(sizes, int) else list(sizes)
    if not plan or any(s <= 0 for s in plan):
        raise ValueError(f"PDV sizes must be positive, got {sizes!r}")
    pieces, offset, turn = [], 0, 0
    while offset < len(data):
        size = plan[min(turn, len(plan) - 1)]
        pieces.append(data[offset : offset + size])
        offset, turn = offset + size, turn + 1
    return pieces


def message_pdus(
    context_id: int,
    command: Message | bytes,
    dataset: bytes | None = None,
    *,
    command_sizes: Sizes = None,
    dataset_sizes: Sizes = None,
    pdvs_per_pdu: int = 1,
) -> list[PDataTF]:
    """P-DATA-TFs carrying ``command`` (a message, or an encoded command set) and ``dataset``.

    Each PDV is flagged command or data set, the final one of each marked last
    (PS3.8 E.2); ``pdvs_per_pdu`` PDVs go in each PDU, so that a command and
    its data set can share one (PS3.8 9.3.5 allows several PDVs per PDU).
    """
    raw = command if isinstance(command, bytes) else encode_command(command)
    pdvs = _pdvs(context_id, True, cut(raw, command_sizes))
    if dataset is not None:
        pdvs += _pdvs(context_id, False, cut(dataset, dataset_sizes))
    if pdvs_per_pdu <= 0:
        raise ValueError("pdvs_per_pdu must be positive")
    return [PDataTF(tuple(pdvs[i : i + pdvs_per_pdu])) for i in range(0, len(pdvs), pdvs_per_pdu)]


def _pdvs(context_id: int, is_command: bool, pieces: list[bytes]) -> list[PresentationDataValue]:
    last = len(pieces) - 1
    return [
        PresentationDataValue(context_id, is_command, i == last, piece)
        for i, piece in enumerate(pieces)
    ]
