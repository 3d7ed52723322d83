"""Two sans-I/O upper layers talking in memory: associate, one P-DATA-TF, release.

No socket, no event loop, no clock: bytes are handed from one
:class:`Connection` to the other by hand and time is a number we pass in,
which is how the state machine is tested (PS3.8 9.2, Table 9-10).

    python examples/sans_io_loop.py
"""

from __future__ import annotations

from stellarpacs.dimse.command_codec import decode_command, encode_command
from stellarpacs.dimse.commands import CEchoRQ
from stellarpacs.dimse.fragments import fragment_message
from stellarpacs.uids import IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION
from stellarpacs.ul.connection import (
    AssociationRequested,
    Connection,
    ConnectionEvent,
    DataReceived,
)
from stellarpacs.ul.negotiation import AcceptorPolicy, negotiate
from stellarpacs.ul.pdus import AAssociateAC, AAssociateRQ, PresentationContextRQ, UserInformation

NOW = 0.0  # the fake clock; ARTIM deadlines are computed from it


def transfer(sender: Connection, receiver: Connection, label: str) -> list[ConnectionEvent]:
    """Move what ``sender`` wants to write into ``receiver``; return the receiver's events."""
    data = sender.data_to_send()
    print(f"  {label}: {len(data)} bytes on the wire")
    receiver.receive_data(data, NOW)
    events = []
    while (event := receiver.next_event()) is not None:
        print(f"  -> {type(event).__name__} (state now {receiver.state.name})")
        events.append(event)
    return events


def main() -> None:
    requestor = Connection(requestor=True)
    acceptor = Connection(requestor=False)
    policy = AcceptorPolicy(
        ae_title="STORESCP", abstract_syntaxes={VERIFICATION: (IMPLICIT_VR_LITTLE_ENDIAN,)}
    )
    rq = AAssociateRQ(
        called_ae_title="STORESCP",
        calling_ae_title="ECHOSCU",
        presentation_contexts=(
            PresentationContextRQ(1, VERIFICATION, (IMPLICIT_VR_LITTLE_ENDIAN,)),
        ),
        user_information=UserInformation(maximum_length=16384),
    )

    print("1. A-ASSOCIATE")
    requestor.request(NOW)  # Evt1: the adapter would now open a TCP connection
    acceptor.connection_made(NOW)  # Evt5 on the other side, ARTIM starts
    print(f"  acceptor ARTIM deadline: {acceptor.next_deadline()}")
    requestor.transport_connected(NOW, rq)  # Evt2: the A-ASSOCIATE-RQ is queued
    (indication,) = transfer(requestor, acceptor, "A-ASSOCIATE-RQ")
    assert isinstance(indication, AssociationRequested)
    # Compute, then commit: negotiate() only returns the answer; accept() sends it.
    answer, contexts = negotiate(indication.request, policy)
    if not isinstance(answer, AAssociateAC):
        raise SystemExit(f"rejected: {answer}")
    print(f"  negotiated contexts: {list(contexts.values())}")
    acceptor.accept(answer)
    transfer(acceptor, requestor, "A-ASSOCIATE-AC")
    assert requestor.is_established and acceptor.is_established

    print("2. P-DATA: one C-ECHO-RQ command set")
    command = encode_command(CEchoRQ(message_id=1))
    for pdu in fragment_message(1, command, None, max_pdu_length=16384):
        requestor.send_data(pdu)
    for event in transfer(requestor, acceptor, "P-DATA-TF"):
        if isinstance(event, DataReceived):
            pdv = event.pdu.pdvs[0]
            print(f"  decoded on context {pdv.context_id}: {decode_command(pdv.data)}")

    print("3. A-RELEASE")
    requestor.release()
    transfer(requestor, acceptor, "A-RELEASE-RQ")
    acceptor.release_response()
    print(f"  acceptor ARTIM deadline while it waits for the close: {acceptor.next_deadline()}")
    transfer(acceptor, requestor, "A-RELEASE-RP")
    print(f"  requestor wants the transport closed: {requestor.wants_close}")
    acceptor.receive_data(b"", NOW)  # the requestor closed the TCP connection (Evt17)
    print(f"  final states: requestor {requestor.state.name}, acceptor {acceptor.state.name}")


if __name__ == "__main__":
    main()
