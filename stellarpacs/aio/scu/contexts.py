"""What the requestor proposes: presentation contexts and the A-ASSOCIATE-RQ (PS3.8 9.3.2).

Pure data and functions, shared by :func:`~stellarpacs.aio.client.connect`
and the SCU helpers that choose contexts for what they will send (storage,
C-GET with the SCP role).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from stellarpacs.uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    IMPLICIT_VR_LITTLE_ENDIAN,
    QR_GET_MODELS,
)
from stellarpacs.ul.pdus import AAssociateRQ, PresentationContextRQ, RoleSelection, UserInformation

__all__ = ["DEFAULT_TRANSFER_SYNTAXES", "ProposedContext", "build_request", "get_contexts"]

DEFAULT_TRANSFER_SYNTAXES = (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN)


@dataclass(frozen=True, slots=True)
class ProposedContext:
    """One presentation context to propose; ``scp_role`` asks to act as SCP (C-GET)."""

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...] = DEFAULT_TRANSFER_SYNTAXES
    scu_role: bool = True
    scp_role: bool = False


def build_request(
    calling_ae: str,
    called_ae: str,
    contexts: Sequence[ProposedContext],
    max_pdu_length: int,
) -> AAssociateRQ:
    """The A-ASSOCIATE-RQ for ``contexts`` (odd IDs 1, 3, 5... as PS3.8 9.3.2.2 asks)."""
    if not 1 <= len(contexts) <= 128:
        raise ValueError("between 1 and 128 presentation contexts can be proposed")
    items = tuple(
        PresentationContextRQ(2 * i + 1, c.abstract_syntax, c.transfer_syntaxes)
        for i, c in enumerate(contexts)
    )
    roles = tuple(
        RoleSelection(c.abstract_syntax, c.scu_role, c.scp_role)
        for c in {c.abstract_syntax: c for c in contexts if c.scp_role}.values()
    )
    return AAssociateRQ(
        called_ae_title=called_ae,
        calling_ae_title=calling_ae,
        presentation_contexts=items,
        user_information=UserInformation(
            maximum_length=max_pdu_length,
            implementation_class_uid=IMPLEMENTATION_CLASS_UID,
            implementation_version_name=IMPLEMENTATION_VERSION_NAME,
            role_selections=roles,
        ),
    )


def get_contexts(
    sop_classes: Iterable[str],
    transfer_syntaxes: Sequence[str] = DEFAULT_TRANSFER_SYNTAXES,
    *,
    models: Sequence[str] = QR_GET_MODELS,
) -> list[ProposedContext]:
    """Contexts for a C-GET: the Q/R GET ``models`` and storage contexts with the SCP role.

    Each SOP class gets one context per transfer syntax, each offering that
    syntax alone: the SCP can then send every instance in the very syntax it
    is stored in, where a context offering several lets it choose one for
    all (PS3.4 C.4.3.3, PS3.7 D.3.3.4). ValueError above 128 contexts.
    """
    contexts = [ProposedContext(model) for model in models]
    contexts.extend(
        ProposedContext(sop_class, (syntax,), scu_role=False, scp_role=True)
        for sop_class in dict.fromkeys(sop_classes)
        for syntax in dict.fromkeys(transfer_syntaxes)
    )
    if len(contexts) > 128:
        raise ValueError(f"{len(contexts)} presentation contexts needed, 128 at most")
    return contexts
