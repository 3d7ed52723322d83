"""Protocol-level testing of DICOM peers: raw associations, checks, wire traces, a pytest plugin.

Built on the sans-I/O cores (:mod:`stellarpacs.ul`, :mod:`stellarpacs.dimse`)
and the asyncio adapter; nothing of the server imports it.
"""

from __future__ import annotations

from stellarpacs.testing.checks import (
    check_abort_reason,
    check_associate_ac,
    check_associate_rj,
    check_release,
)
from stellarpacs.testing.fragments import cut, message_pdus
from stellarpacs.testing.frames import Frame, Framer, describe_pdu
from stellarpacs.testing.raw import DimseMessage, ExpectationFailed, RawAssociation
from stellarpacs.testing.wire import PcapWriter, TraceWriter, tapping

__all__ = [
    "DimseMessage",
    "ExpectationFailed",
    "Frame",
    "Framer",
    "PcapWriter",
    "RawAssociation",
    "TraceWriter",
    "check_abort_reason",
    "check_associate_ac",
    "check_associate_rj",
    "check_release",
    "cut",
    "describe_pdu",
    "message_pdus",
    "tapping",
]
