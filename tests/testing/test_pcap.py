"""The pcap writer alone: PDUs cut across TCP segments are reassembled by tshark; every
networking command has the flags."""

from __future__ import annotations

import io
import struct
import time
from pathlib import Path

import pytest

from stellarpacs.cli import main
from stellarpacs.testing import PcapWriter
from stellarpacs.ul.codec import encode_pdu
from stellarpacs.ul.pdus import AAssociateAC, AReleaseRP, AReleaseRQ, UserInformation
from tests.integration.peers import associate_rq
from tests.testing.test_wire import tshark_types

CLIENT, SERVER = ("127.0.0.1", 40001), ("127.0.0.1", 11112)


async def test_a_pdu_cut_across_segments_is_reassembled(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    tap = PcapWriter(buffer)(CLIENT, SERVER)  # as the requestor sees it
    rq = encode_pdu(associate_rq("SCP"))
    now = time.time()
    for start in range(0, len(rq), 50):  # the A-ASSOCIATE-RQ in 50-byte segments
        tap(False, rq[start : start + 50], now)
    ac = AAssociateAC("SCP", "RAWPEER", (), UserInformation(implementation_class_uid="1.2"))
    tap(True, encode_pdu(ac), now)
    tap(False, encode_pdu(AReleaseRQ()), now)
    tap(True, encode_pdu(AReleaseRP())[:3], now)
    tap(True, encode_pdu(AReleaseRP())[3:], now)
    pcap = tmp_path / "cut.pcap"
    pcap.write_bytes(buffer.getvalue())
    magic, major, minor, _, _, _, linktype = struct.unpack_from("<IHHiIII", pcap.read_bytes())
    assert (magic, major, minor, linktype) == (0xA1B2C3D4, 2, 4, 1)  # LINKTYPE_ETHERNET
    assert await tshark_types(pcap, SERVER[1]) == ["0x01", "0x02", "0x05", "0x06"]


@pytest.mark.parametrize(
    "command", ["serve", "echo", "store", "find", "move", "get", "commit", "mpps"]
)
def test_every_networking_command_takes_trace_and_pcap(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "--trace FILE" in out and "--pcap FILE" in out
