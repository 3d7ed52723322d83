"""Write CONFORMANCE.md, our DICOM conformance statement (PS3.2), from the code's own tables.

    python conformance/generate.py           # rewrite CONFORMANCE.md
    python conformance/generate.py --check   # exit 1 when CONFORMANCE.md is stale

What we claim is what we do.  The services are those of the default
ServiceSet, in the Server that ``python -m stellarpacs serve`` builds; the
presentation contexts are that Server's AcceptorPolicy; the association rules
are read off :func:`negotiate` run on sample requests (the script stops when a
documented rejection is not what negotiate sends); defaults, keys and statuses
come from Config, the status tables and the archive.  The text keeps the
structure of the StellarPACS 1.3 statement (August 2008) and marks what goes
beyond it **Extension**; its services that nothing serves yet are listed in
section 8.1, which shrinks by itself as services are added.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import stellarpacs
from stellarpacs import tls, uids
from stellarpacs.access import decide
from stellarpacs.aio.handler import ServiceHandler
from stellarpacs.aio.scu.contexts import ProposedContext, build_request
from stellarpacs.aio.scu.store import StoreItem, propose_contexts
from stellarpacs.aio.server import Server
from stellarpacs.audit.events import MAX_ITEMS, MAX_TEXT
from stellarpacs.audit.message import describe_messages
from stellarpacs.audit.syslog import MSGID, PRI, QUEUE_SIZE, RETRY_AFTER
from stellarpacs.config import Config
from stellarpacs.config_access import JWT_DEFAULT_ALGORITHMS, SERVICES
from stellarpacs.config_docs import describe_keys
from stellarpacs.config_tls import tls_rows
from stellarpacs.dimse.commands import (
    COMMAND_NAMES,
    CEchoRQ,
    CFindRQ,
    CGetRQ,
    CMoveRQ,
    CStoreRQ,
    Message,
    NActionRQ,
    NCreateRQ,
    NSetRQ,
)
from stellarpacs.dimse.status import ServiceClass, Status, category, describe
from stellarpacs.services.registry import default_services
from stellarpacs.services.storage import StoreStatus
from stellarpacs.storage.archive import Archive
from stellarpacs.ul.negotiation import AcceptorPolicy, RejectReason, negotiate
from stellarpacs.ul.pdus import (
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AsynchronousOperationsWindow,
    ContextResult,
    PresentationContextRQ,
    RoleSelection,
    UserInformation,
)

OUTPUT = Path(__file__).with_name("CONFORMANCE.md")
IMPLICIT = uids.IMPLICIT_VR_LITTLE_ENDIAN
CT = "1.2.840.10008.5.1.4.1.1.2"  # CT and MR Image Storage: the samples of the probes
MR = "1.2.840.10008.5.1.4.1.1.4"
TABLE2 = {sop.uid: sop.name for sop in uids.TABLE2_STORAGE}
IN_1_3: Mapping[str, str] = {  # where the 1.3 statement listed a SOP class
    uids.VERIFICATION: "Table 1",
    **{uid: f"Table 2 ({name})" for uid, name in TABLE2.items()},
    **{uid: "Table 3" for uid in uids.QR_FIND_MODELS + uids.QR_MOVE_MODELS},
    uids.STORAGE_COMMITMENT_PUSH: "3.1.3.3",
    uids.MPPS: "1 (optional)",
}
EXTENSION = "**Extension**"
Lines = list[str]


# --- The 1.3 statement's services, and the text the code cannot give ----------------------


@dataclass(frozen=True, slots=True)
class LegacyService:
    """A service of the 1.3 statement; provided when a service answers ``requests`` for
    one of ``trigger`` (its own SOP classes unless given)."""

    name: str
    section: str
    role: str
    requests: tuple[type[Message], ...]
    sop_classes: tuple[str, ...]
    trigger: tuple[str, ...] = ()
    note: str = ""


STATEMENT_1_3 = (
    LegacyService("Verification", "3.1.3.1", "SCP", (CEchoRQ,), (uids.VERIFICATION,)),
    LegacyService("Storage", "3.1.3.2", "SCP", (CStoreRQ,), tuple(TABLE2)),
    LegacyService(
        "Storage Commitment Push Model", "3.1.3.3", "SCP", (NActionRQ,),
        (uids.STORAGE_COMMITMENT_PUSH,), note="1.3 printed 1.2.840.10008.5.1.20.1, a typo",
    ),
    LegacyService("Query/Retrieve - FIND", "3.1.3.4", "SCP", (CFindRQ,), uids.QR_FIND_MODELS),
    LegacyService("Query/Retrieve - MOVE", "3.1.3.5", "SCP", (CMoveRQ,), uids.QR_MOVE_MODELS),
    LegacyService(
        "Storage, for C-MOVE sub-operations", "3.1.2.1", "SCU", (CMoveRQ,), tuple(TABLE2),
        trigger=uids.QR_MOVE_MODELS,
    ),
    LegacyService(
        "Modality Performed Procedure Step", "", "SCP", (NCreateRQ, NSetRQ), (uids.MPPS,),
        note="named as optional in 1.3's introduction, without a section",
    ),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ServiceText:
    """What a service's tables do not say: its activity, and when each status is sent.

    A service may declare the first ones itself, as class attributes (see DECLARED);
    what it declares wins over TEXTS.
    """

    name: str
    activity: str
    statuses: Mapping[int, str] = field(default_factory=dict)  # code -> sent when
    status_service: ServiceClass | None = None
    conformance: str = ""
    selection: str = ""
    charset: str = ""  # what the service does with character sets (section 7)
    initiates: str = ""  # the associations it opens itself (section 3.1.2)


DECLARED = {"activity": "ACTIVITY", "conformance": "CONFORMANCE", "statuses": "STATUSES"}

_RETRIEVE_STATUSES: Mapping[int, str] = {
    Status.PENDING: "after each sub-operation but the last",
    Status.SUCCESS: "every sub-operation succeeded",
    Status.SUBOPERATIONS_COMPLETE_WITH_FAILURES: "some failed (Failed SOP Instance UID List)",
    Status.OUT_OF_RESOURCES_MATCHES: "the index could not be searched, or the identifier "
    "is over `max_identifier_size`",
    Status.OUT_OF_RESOURCES_SUBOPERATIONS: "no sub-operation could be attempted",
    Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS: "the identifier does not fit the model",
    Status.UNABLE_TO_PROCESS: "the identifier cannot be parsed or lacks a unique key",
    Status.CANCEL: "a C-CANCEL arrived; the rest is not sent",
}
_SUBOPERATIONS = (
    "Each instance goes in its stored transfer syntax when accepted, otherwise decoded "
    "into an accepted uncompressed one."
)

TEXTS: Mapping[type[Message], ServiceText] = {  # keyed by the request class served
    NActionRQ: ServiceText(
        "Storage Commitment Push Model",
        "Answers N-ACTION storage commitment requests.",
        initiates="The results of storage commitment requests (N-EVENT-REPORT) go on a new "
        "association to the requesting AE, a `[remotes]` entry (section 3.1.3.3).",
    ),
    CEchoRQ: ServiceText(
        "Verification",
        "Answers C-ECHO so that an SCU can check that StellarPACS receives requests.",
        {Status.SUCCESS: "always"},
        conformance="Standard conformance to the Verification SOP Class (PS3.4 A).",
    ),
    CStoreRQ: ServiceText(
        "Storage",
        "Each C-STORE data set is streamed to a temporary file, made durable (fsync, atomic "
        "rename) and indexed; only then is the response sent.",
        {
            StoreStatus.SUCCESS: "stored and indexed; also for an identical second copy of a "
            "stored SOP Instance UID, which is not kept, and for a replacing one",
            StoreStatus.OUT_OF_RESOURCES: "the file or the index could not be written, or a "
            "deflated header needs more than `max_inflated_header` bytes inflated",
            StoreStatus.CANNOT_UNDERSTAND: "the data set cannot be parsed, or its SOP Instance "
            "UID is not the command's (nothing stored)",
            Status.DATASET_DOES_NOT_MATCH_SOP_CLASS: "its SOP Class UID is not the command's",
            Status.ELEMENTS_DISCARDED: "a known SOP Instance UID with other content, "
            "`duplicate_policy = keep`: the first copy stays, this one is discarded",
            Status.DUPLICATE_SOP_INSTANCE: "the same, `duplicate_policy = reject`",
            Status.SOP_CLASS_NOT_SUPPORTED: "the command's SOP class is not its context's",
            Status.INVALID_OBJECT_INSTANCE: "the SOP Instance UID holds non-ASCII bytes",
        },
        ServiceClass.STORAGE,
        "Level 2 (Full) Storage SCP (PS3.4 B.4.1): no element is discarded or coerced; the "
        "file is the data set byte for byte as received, after a PS3.10 meta header. "
        "Nothing is validated beyond the command and the data set's own SOP UIDs. StellarPACS "
        "never deletes a received file, except the one that a `duplicate_policy = replace` "
        "arrival stands in for; a kept-out copy is discarded whole (B006, section 9.4).",
        "Our order is the key `transfer_syntax_preference` (section 6.2).",
    ),
    CFindRQ: ServiceText(
        "Query/Retrieve - FIND",
        "Matches the identifier against the index and returns each match as it is read, with "
        "the requested keys, the Query/Retrieve Level and our AE title as Retrieve AE Title.",
        {
            Status.PENDING: "a match; all keys were matched",
            Status.PENDING_WARNING: "a match; some optional key could not be matched",
            Status.SUCCESS: "after the last match",
            Status.CANCEL: "a C-CANCEL arrived; no more matches are sent",
            Status.OUT_OF_RESOURCES: "the index cannot be read, or the identifier is over "
            "`max_identifier_size`",
            Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS: "the identifier does not fit the model",
            0xC001: "the identifier cannot be processed",
            Status.SOP_CLASS_NOT_SUPPORTED: "the command's SOP class is not its context's",
        },
        ServiceClass.FIND,
        "Hierarchical search of the Patient Root, Study Root and Patient/Study Only models "
        "(PS3.4 C.4.1); Person Name matching is case-insensitive unless "
        "`case_insensitive_person_names` is false. Matching (PS3.4 C.2.2.2): single value, "
        "universal, wildcard `*` and `?`, list of UIDs, range on DA, TM and DT, one level of "
        "sequence matching. Study Date and Study Time given as ranges are always matched as one "
        "combined date-time range, without the extended negotiation that asks for it. Time-zone "
        "offsets in DT are ignored; a Person Name is matched as one whole value, not per "
        "component group. A failure ends the operation, never the association.",
        charset="C-FIND responses carry the request's Specific Character Set when it can "
        "encode every returned value, else ISO_IR 192 (UTF-8) when a value is not ASCII.",
    ),
    CMoveRQ: ServiceText(
        "Query/Retrieve - MOVE",
        "Finds the instances the identifier names in the index and sends them to the Move "
        "Destination as C-STORE sub-operations over a new association (section 3.1.2.1).",
        {**_RETRIEVE_STATUSES, Status.MOVE_DESTINATION_UNKNOWN: "not a `[remotes]` entry"},
        ServiceClass.MOVE,
        "Sub-operations go only to Move Destinations listed under `[remotes]`.",
    ),
    CGetRQ: ServiceText(
        "Query/Retrieve - GET",
        "Finds the instances the identifier names and sends them as C-STORE sub-operations "
        "on the same association, on contexts where the requestor took the SCP role.",
        _RETRIEVE_STATUSES,
        ServiceClass.GET,
        "The requestor must propose SCP role selection for the Storage SOP classes (3.1.3).",
        _SUBOPERATIONS,
    ),
}


# --- What is served, built the way the server builds it ---------------------------------


def build_server(config: Config) -> Server:
    """The Server of ``python -m stellarpacs serve``; never started, its archive never opened."""
    return Server(config, asyncio.run(_default_services(config)))


async def _default_services(config: Config) -> list[ServiceHandler]:
    service_set = await default_services(
        config,
        Archive(config.storage, fsync=config.fsync, duplicate_policy=config.duplicate_policy),
    )
    service_set.archive = None  # never opened: only the services' own workers are stopped
    await service_set.close()
    return service_set.services


def dimse_names(requests: Iterable[type[Message]]) -> str:
    return ", ".join(COMMAND_NAMES[r.command_field].removesuffix("-RQ") for r in requests)


def provided(legacy: LegacyService, services: Sequence[ServiceHandler]) -> bool:
    syntaxes = legacy.trigger or legacy.sop_classes
    return any(
        set(legacy.requests) <= set(s.requests) and any(u in s.abstract_syntaxes for u in syntaxes)
        for s in services
    )


def numbered(services: Sequence[ServiceHandler]) -> list[tuple[str, str, ServiceHandler]]:
    """(section, title, service): 1.3's numbers for its services, new ones after them."""
    result, extra = [], 6
    for service in services:
        legacy = [s for s in STATEMENT_1_3 if s.role == "SCP" and provided(s, [service])]
        if legacy and legacy[0].section:
            result.append((legacy[0].section, legacy[0].name, service))
            continue
        name = legacy[0].name if legacy else f"{text_of(service).name} ({EXTENSION})"
        result.append((f"3.1.3.{extra}", name, service))
        extra += 1
    return sorted(result, key=lambda entry: [int(part) for part in entry[0].split(".")])


# --- Probes: negotiate() answering sample requests -------------------------------------

PROBE_WINDOW = AsynchronousOperationsWindow(invoked=5, performed=5)
PROBE_SEVERAL = (uids.VERIFICATION, CT, MR)


@dataclass(frozen=True, slots=True)
class Facts:
    """What negotiate answered; the association policy text is written from these."""

    window: AsynchronousOperationsWindow | None  # the answer to PROBE_WINDOW
    several: tuple[str, ...]  # served abstract syntaxes proposed together...
    several_accepted: int  # ...and how many of them were accepted
    role: RoleSelection  # the answer to asking for both roles for a served SOP class

    @property
    def shared(self) -> bool:
        """Whether contexts for several abstract syntaxes share one association."""
        return len(self.several) > 1 and self.several_accepted == len(self.several)

    @property
    def window_of_one(self) -> bool:
        return self.window is not None and self.window.invoked == self.window.performed == 1


def probe(
    policy: AcceptorPolicy,
    contexts: Sequence[tuple[str, tuple[str, ...]]] = ((uids.VERIFICATION, (IMPLICIT,)),),
    *,
    called: str | None = None,
    user: UserInformation | None = None,
    context_name: str = uids.APPLICATION_CONTEXT_NAME,
    at_capacity: bool = False,
    closed: bool = False,
) -> AAssociateAC | AAssociateRJ:
    rq = AAssociateRQ(
        called_ae_title=policy.ae_title if called is None else called,
        calling_ae_title="PROBE",
        presentation_contexts=tuple(
            PresentationContextRQ(2 * i + 1, a, ts) for i, (a, ts) in enumerate(contexts)
        ),
        user_information=user or UserInformation(),
        application_context_name=context_name,
    )
    if closed:  # the calling AE rule of a closed configuration (9.2)
        admission = decide(Config(accept_unknown_calling_ae=False), rq, "192.0.2.1").admission
        return negotiate(rq, policy, admission=admission)[0]
    return negotiate(rq, policy, at_capacity=at_capacity)[0]


def accepted(answer: AAssociateAC | AAssociateRJ) -> AAssociateAC:
    if not isinstance(answer, AAssociateAC):
        raise SystemExit(f"conformance claim does not hold: rejected with {answer}")
    return answer


def check_rejects(policy: AcceptorPolicy) -> None:
    """Each reject reason is what negotiate sends in the case section 3.1.3 gives for it."""
    # More role selection answers than one user information item holds (PS3.8 9.3.3.3).
    roles = tuple(
        RoleSelection(f"1.2.826.0.1.3680043.9.{10**10 + n}", True, False) for n in range(1600)
    )
    cases = {
        RejectReason.APPLICATION_CONTEXT_NOT_SUPPORTED: probe(policy, context_name="1.2.3"),
        RejectReason.CALLED_AE_NOT_RECOGNIZED: probe(policy, called="NOT-" + policy.ae_title),
        RejectReason.LOCAL_LIMIT_EXCEEDED: probe(policy, at_capacity=True),
        RejectReason.NO_REASON_GIVEN: probe(policy, user=UserInformation(role_selections=roles)),
        RejectReason.CALLING_AE_NOT_RECOGNIZED: probe(policy, closed=True),
    }
    for reason in RejectReason:
        if cases.get(reason) != reason.pdu():
            raise SystemExit(f"conformance claim does not hold: {reason.name} is not sent")


def gather_facts(policy: AcceptorPolicy) -> Facts:
    check_rejects(policy)
    window = probe(policy, user=UserInformation(asynchronous_operations_window=PROBE_WINDOW))
    served = policy.abstract_syntaxes
    picks = tuple(uid for uid in PROBE_SEVERAL if uid in served)
    several = picks if len(picks) > 1 else tuple(served)[:3]
    answer = accepted(probe(policy, [(uid, served[uid][:1]) for uid in several]))
    ok = sum(pc.result == ContextResult.ACCEPTANCE for pc in answer.presentation_contexts)
    sop = next((uid for uid in (CT, *policy.roles) if uid in served), next(iter(served)))
    ask = UserInformation(role_selections=(RoleSelection(sop, scu_role=True, scp_role=True),))
    role = accepted(probe(policy, [(sop, served[sop][:1])], user=ask))
    return Facts(
        accepted(window).user_information.asynchronous_operations_window,
        several,
        ok,
        role.user_information.role_selections[0],
    )


def chosen_for(policy: AcceptorPolicy, abstract_syntax: str, offer: tuple[str, ...]) -> str:
    """The transfer syntax negotiate picks when ``offer`` is proposed for ``abstract_syntax``."""
    answer = accepted(probe(policy, [(abstract_syntax, offer)]))
    return answer.presentation_contexts[0].transfer_syntax


@dataclass(frozen=True, slots=True)
class Model:
    """All the sections read: configuration, served services, policy, probe facts."""

    config: Config
    services: Sequence[ServiceHandler]
    policy: AcceptorPolicy
    sets: Mapping[tuple[str, ...], str]  # each accepted transfer syntax list -> "TS-n"
    facts: Facts

    @classmethod
    def build(cls, config: Config) -> Model:
        server = build_server(config)
        policy = server.policy
        sets: dict[tuple[str, ...], str] = {}
        for syntaxes in policy.abstract_syntaxes.values():
            sets.setdefault(syntaxes, f"TS-{len(sets) + 1}")
        return cls(config, server.services, policy, sets, gather_facts(policy))

    @property
    def missing(self) -> list[LegacyService]:
        return [legacy for legacy in STATEMENT_1_3 if not provided(legacy, self.services)]


# --- Markdown --------------------------------------------------------------------------


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> Lines:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*lines, *("| " + " | ".join(cell(c) for c in row) + " |" for row in rows), ""]


def heading(level: int, text: str) -> Lines:
    return ["#" * level + " " + text, ""]


def para(*sentences: str) -> Lines:
    text = " ".join(s for s in sentences if s)
    return [text, ""] if text else []


def names(syntaxes: Iterable[str]) -> str:
    return "; ".join(uids.name_of(uid) for uid in syntaxes)  # names may hold commas


def in_table4(uid: str) -> str:
    return "Table 4" if uid in uids.TABLE4_TRANSFER_SYNTAXES else EXTENSION


def yes(flag: bool) -> str:
    return "yes" if flag else "no"


# --- Sections 1 and 2 --------------------------------------------------------------------


def render_title(m: Model) -> Lines:
    return [
        *heading(1, "StellarPACS DICOM Conformance Statement"),
        *para(
            f"StellarPACS {stellarpacs.__version__}. Generated from the code by "
            "`python conformance/generate.py`; do not edit by hand."
        ),
        *para(
            "This statement keeps the structure of the StellarPACS 1.3 statement (August "
            f"2008). What goes beyond 1.3 is marked {EXTENSION}; the services of 1.3 not "
            "provided yet are listed in section 8.1 and claimed nowhere else."
        ),
    ]


def render_introduction(m: Model) -> Lines:
    served = [f"{title} SCP" for _, title, _ in numbered(m.services)]
    missing = [f"{legacy.name} {legacy.role}" for legacy in m.missing]
    return [
        *heading(2, "1 Introduction"),
        *para(
            f"This release provides: {', '.join(served)}.",
            f"Not yet provided (section 8.1): {', '.join(missing)}." if missing else "",
        ),
        *heading(3, "1.1 Reference"),
        *para("DICOM PS3.1 to PS3.20; PS3.2 gives the form of this statement."),
        *heading(3, "1.2 Definitions"),
        *para("As in PS3.2, PS3.7 and PS3.8 (association, AE title, DIMSE, SCP, SCU, SOP class)."),
        *heading(3, "1.3 Acronyms, Abbreviations and Symbols"),
        *para("As in PS3.2; TS-n names a list of transfer syntaxes given in section 3.1."),
    ]


def render_model(m: Model) -> Lines:
    ae = m.config.ae_title
    flows = [
        f"Remote SCU --{dimse_names(s.requests)}--> {ae} ({title} SCP)"
        for _, title, s in numbered(m.services)
    ] + [
        f"{ae} --C-STORE--> Remote SCP ({legacy.name} SCU)"
        for legacy in STATEMENT_1_3
        if legacy.role == "SCU" and provided(legacy, m.services)
    ]
    return [
        *heading(2, "2 Implementation Model"),
        *heading(3, "2.1 Application Data Flow Diagram"),
        "```",
        *(flow.replace(EXTENSION, "Extension") for flow in flows),
        f"{ae} <--> PS3.10 files and their index under the `storage` folder",
        "```",
        "",
        *heading(3, "2.2 Functional Definition of Application Entities"),
        *para(
            f"One Application Entity, `{ae}` by default, waits for associations on TCP port "
            f"{m.config.port} and serves every service of section 3.1.3 on each of them "
            "(1.3 described a separate Query/Retrieve AE)."
        ),
        *heading(3, "2.3 Sequencing of Real World Activity"),
        *para("Not applicable."),
    ]


# --- Section 3 ------------------------------------------------------------------------


def render_entity(m: Model) -> Lines:
    services = [
        (section, title, dimse_names(s.requests), "SCP", len(s.abstract_syntaxes))
        for section, title, s in numbered(m.services)
    ]
    lines = [
        *heading(2, "3 Application Entity Specifications"),
        *heading(3, "3.1 StellarPACS DICOM Server Application Entity"),
        *table(("Section", "Service", "DIMSE", "Role", "SOP classes"), services),
        *para("Transfer syntaxes accepted, most preferred first, and whether 1.3 listed them:"),
    ]
    for syntaxes, name in m.sets.items():
        rows = [(i, uids.name_of(ts), ts, in_table4(ts)) for i, ts in enumerate(syntaxes, 1)]
        lines += [*para(f"**{name}**"), *table(("#", "Transfer Syntax", "UID", "1.3"), rows)]
    return lines


def render_establishment(m: Model) -> Lines:
    config, window = m.config, m.facts.window
    answer = f"{window.invoked}/{window.performed}" if window else "without a window"
    return [
        *heading(4, "3.1.1 Association Establishment Policies"),
        *heading(5, "3.1.1.1 General"),
        *para(
            f"Application context {uids.APPLICATION_CONTEXT_NAME} (PS3.7 A.2.1).",
            f"The maximum PDU length we receive is {config.max_pdu_length} bytes "
            "(`max_pdu_length`); what we send never exceeds the peer's Maximum Length.",
            f"ARTIM timeout {config.artim_timeout:g} s (`artim_timeout`, PS3.8 9.1.5); an "
            f"association idle for {config.idle_timeout:g} s is aborted (`idle_timeout`).",
        ),
        *heading(5, "3.1.1.2 Number of Associations"),
        *para(
            f"At most {config.max_associations} simultaneous associations by default "
            "(`max_associations`); the next one is rejected (section 3.1.3)."
        ),
        *heading(5, "3.1.1.3 Asynchronous Nature"),
        *para(
            "Asynchronous operations are not supported: one operation is outstanding at a time.",
            f"A proposed Asynchronous Operations Window ({PROBE_WINDOW.invoked}/"
            f"{PROBE_WINDOW.performed}) is answered {answer} (invoked/performed) and the "
            f"association accepted ({EXTENSION}: 1.3 rejected the association)."
            if m.facts.window_of_one
            else "",
        ),
        *heading(5, "3.1.1.4 Implementation Identifying Information"),
        *table(
            ("Item", "Value"),
            (
                ("Implementation Class UID", uids.IMPLEMENTATION_CLASS_UID),
                ("Implementation Version Name", uids.IMPLEMENTATION_VERSION_NAME),
            ),
        ),
    ]


def render_initiation(m: Model) -> Lines:
    lines = heading(4, "3.1.2 Association Initiation By Real-World Activity")
    for legacy in (s for s in STATEMENT_1_3 if s.role == "SCU"):
        if provided(legacy, m.services):
            lines += render_suboperations(m, legacy)
        else:
            lines += para(f"{legacy.name} (1.3 section {legacy.section}): see section 8.1.")
    for _, _, service in numbered(m.services):
        lines += para(text_of(service).initiates)
    rq = build_request("ECHOSCU", "ANY-SCP", [ProposedContext(uids.VERIFICATION)], 16384)
    proposed = rq.presentation_contexts[0]
    return [
        *lines,
        *heading(5, f"3.1.2.2 Real-World Activity - Command-Line Tools ({EXTENSION})"),
        *para(
            "`python -m stellarpacs echo` and `stellarpacs.connect()` act as Verification SCU: "
            f"they propose {uids.name_of(proposed.abstract_syntax)} with "
            f"{names(proposed.transfer_syntaxes)} and the identification of 3.1.1.4.",
            "`python -m stellarpacs store` acts as Storage SCU and proposes its files' contexts "
            "as the table of 3.1.2.1 shows."
            if any(
                legacy.role == "SCU" and provided(legacy, m.services) for legacy in STATEMENT_1_3
            )
            else "",
            "Every networking command (`serve`, `echo`, `store`, `find`, `move`, `get`, "
            "`commit`, `mpps`) takes `--trace FILE` (one JSON line per PDU in and out, decoded "
            "and escaped) and `--pcap FILE` (the same traffic as a pcap file for Wireshark's "
            "DICOM dissector); both only observe the wire and change nothing on it.",
        ),
    ]


def render_suboperations(m: Model, legacy: LegacyService) -> Lines:
    """The server as Storage SCU; what it proposes is read off propose_contexts."""
    stored = ((CT, uids.JPEG_BASELINE), (MR, uids.EXPLICIT_VR_LITTLE_ENDIAN))
    items = [StoreItem(Path("-"), sop, "1.2.3", ts, 0, 0) for sop, ts in stored]
    rows = [
        (uids.name_of(c.abstract_syntax), names(c.transfer_syntaxes), "SCU")
        for c in propose_contexts(items)
    ]
    samples = "; ".join(f"{uids.name_of(sop)} in {uids.name_of(ts)}" for sop, ts in stored)
    trigger = next(s for s in STATEMENT_1_3 if s.role == "SCP" and s.requests == legacy.requests)
    number = legacy.section
    return [
        *heading(5, f"{number} Real-World Activity - {legacy.name}"),
        *heading(6, f"{number}.1 Associated Real-World Activity"),
        *para(
            f"A {dimse_names(legacy.requests)} (section {trigger.section}) makes "
            f"`{m.config.ae_title}` open an association to the Move Destination, a "
            "`[remotes]` entry, and send each matching instance by C-STORE; the association "
            "is released after the last one."
        ),
        *heading(6, f"{number}.2 Presentation Context Table"),
        *para(f"For instances stored as {samples}, the proposed contexts are:"),
        *table(("Abstract Syntax", "Transfer Syntaxes", "Role"), rows),
        *heading(6, f"{number}.3 Transfer Syntax Selection Policies"),
        *para(_SUBOPERATIONS),
    ]


REJECTED_WHEN: Mapping[RejectReason, str] = {
    RejectReason.APPLICATION_CONTEXT_NOT_SUPPORTED: "the application context is not DICOM's",
    RejectReason.CALLED_AE_NOT_RECOGNIZED: "the Called AE Title is not ours and "
    "`accept_any_called_ae` is false",
    RejectReason.LOCAL_LIMIT_EXCEEDED: "`max_associations` associations are open",
    RejectReason.CALLING_AE_NOT_RECOGNIZED: "the Calling AE Title has no `[remotes]` table "
    "and `accept_unknown_calling_ae` is false, or `check_host` fails (9.2)",
    RejectReason.NO_REASON_GIVEN: "the A-ASSOCIATE-AC would not fit its 16-bit item lengths "
    "(e.g. answers to over 1,500 role selection items); a user identity fails, or is missing "
    "where one is required (9.2)",
}


def render_acceptance(m: Model) -> Lines:
    facts, role = m.facts, m.facts.role
    called = "any Called AE Title" if m.config.accept_any_called_ae else "our AE title only"
    calling = (
        "Any Calling AE Title may connect (`accept_unknown_calling_ae`, 4.3)"
        if m.config.accept_unknown_calling_ae
        else "Only the Calling AE Titles of `[remotes]` may connect (9.2)"
    )
    rejects = [
        (r.value[0].name, r.value[1].name, r.value[2], REJECTED_WHEN.get(r, r.name))
        for r in RejectReason
    ]
    return [
        *heading(4, "3.1.3 Association Acceptance Policy"),
        *para(
            f"{calling}; as Called AE Title we accept {called} "
            "(`accept_any_called_ae`). Each service is described below under its section "
            "number of 1.3; a missing number is a service of section 8.1. An association is "
            "rejected with A-ASSOCIATE-RJ (PS3.8 Table 9-21) when:"
        ),
        *table(("Result", "Source", "Reason", "When"), rejects),
        *para(
            f"Of {names(facts.several)} proposed together, all are accepted: contexts for "
            f"several abstract syntaxes share an association ({EXTENSION} of 1.3 section "
            "3.1.3.2.3, which took one abstract syntax besides Verification)."
            if facts.shared
            else "",
            "SCP/SCU Role Selection (PS3.7 D.3.3.4) is answered per SOP class: a requestor "
            f"asking to be SCU and SCP of {uids.name_of(role.sop_class_uid)} is answered SCU "
            f"{yes(role.scu_role)}, SCP {yes(role.scp_role)}"
            + (f" ({EXTENSION})." if role.scp_role else "."),
            "SOP Class Extended Negotiation is not supported.",
        ),
    ]


def render_service(m: Model, number: str, title: str, service: ServiceHandler) -> Lines:
    text = text_of(service)
    rows = [
        (uids.name_of(uid), uid, m.sets[ts], "SCP", "None", IN_1_3.get(uid, EXTENSION))
        for uid, ts in service.abstract_syntaxes.items()
    ]
    statuses = [
        (f"{code:04X}", category(code).value, meaning(code, text), when)
        for code, when in text.statuses.items()
    ]
    return [
        *heading(5, f"{number} Real-World Activity - {title}"),
        *heading(6, f"{number}.1 Associated Real-World Activity"),
        *para(text.activity),
        *heading(6, f"{number}.2 Presentation Context Table"),
        *table(("Abstract Syntax", "UID", "Transfer Syntaxes", "Role", "Ext. Neg.", "1.3"), rows),
        *para(f"**{number}.2.1 SOP Specific Conformance.**", text.conformance),
        *(table(("Status", "Category", "Meaning", "Sent when"), statuses) if statuses else []),
        *heading(6, f"{number}.3 Presentation Context Acceptance Criterion"),
        *para(
            "A context is accepted when its abstract syntax is listed above and it proposes a "
            "listed transfer syntax, beside any other accepted context."
        ),
        *heading(6, f"{number}.4 Transfer Syntax Selection Policies"),
        *para(selection_policy(m, service), text.selection),
    ]


def text_of(service: ServiceHandler) -> ServiceText:
    """Our text for the service, overridden by what the service declares of itself."""
    dimse = dimse_names(service.requests)
    text = TEXTS.get(service.requests[0]) or ServiceText(dimse, f"Answers {dimse}.")
    declared = {
        name: value
        for name, attribute in DECLARED.items()
        if (value := getattr(service, attribute, None)) is not None
    }
    return replace(text, **declared)


def meaning(code: int, text: ServiceText) -> str:
    """The status's meaning per dimse.status, without its code and category."""
    return describe(code, text.status_service).split(": ", 1)[-1]


def selection_policy(m: Model, service: ServiceHandler) -> str:
    """Read the choice off negotiate: offer the top three in reverse order, see which wins."""
    uid = CT if CT in service.abstract_syntaxes else next(iter(service.abstract_syntaxes))
    syntaxes = service.abstract_syntaxes[uid]
    if len(syntaxes) == 1:
        return f"Only {uids.name_of(syntaxes[0])} is accepted."
    offer = tuple(reversed(syntaxes[:3]))
    return (
        "The first of our order that the requestor proposes is chosen, whatever its order: "
        f"offered {names(offer)} for {uids.name_of(uid)}, we choose "
        f"{uids.name_of(chosen_for(m.policy, uid, offer))}."
    )


# --- Sections 4 to 8 ----------------------------------------------------------------------


def render_profiles(m: Model) -> Lines:
    return [
        *heading(2, "4 Communication Profiles"),
        *heading(3, "4.1 Supported Communication Stacks"),
        *para(
            "The DICOM upper layer over TCP/IP (PS3.8), and over TLS (PS3.15 B.12, B.13) "
            "when configured (4.3)."
        ),
        *heading(3, "4.2 TCP/IP Stack"),
        *para(
            "Inherited from the operating system, IPv4 or IPv6; by default we listen on "
            f"{m.config.host} port {m.config.port} (`host`, `port`)."
        ),
        *heading(4, "4.2.1 Physical Media Support"),
        *para("Whatever the operating system's TCP/IP runs on."),
        *render_tls(m),
    ]


def render_tls(m: Model) -> Lines:
    """The TLS subsection of the security profiles, from :mod:`stellarpacs.tls`'s tables."""
    suites = tls.BCP195_SUITES.replace(":", ", ")
    rows = [
        ("bcp195-nd", "Non-downgrading BCP 195 TLS (B.13)", f"{suites} only"),
        ("bcp195", "BCP 195 TLS (B.13)", "the above, then AES128-SHA, AES256-SHA"),
        ("basic", "Basic TLS Secure Transport Connection (B.12)", "OpenSSL's DEFAULT list"),
    ]
    assert {r[0] for r in rows} == set(tls.PROFILES), "a profile without its row"
    return [
        *heading(3, f"4.3 Security Profiles: TLS ({EXTENSION})"),
        *para(
            "With `tls.certificate` and `tls.private_key` set, the server also listens for TLS "
            f"on `tls.port` (default {m.config.tls.port}, IANA's dicom-tls); `tls.only` "
            "turns the plain listener off. Every profile negotiates TLS 1.3 when the peer "
            "has it and refuses anything older than TLS 1.2 (RFC 8996), even where BCP 195 "
            "(RFC 9325) would allow a fallback. TLS 1.3 suites are OpenSSL's (all AEAD). "
            f"`tls.profile` (default `{tls.DEFAULT_PROFILE}`) chooses the TLS 1.2 suites:",
        ),
        *table(("Profile", "PS3.15", "TLS 1.2 cipher suites"), rows),
        *para(
            "With `tls.verify_peer` a client certificate signed by `tls.ca_file` is required. "
            "The handshake must end within the ARTIM timeout; a failed one (plain DICOM on "
            "the TLS port, TLS 1.1 or older, no common suite, a missing or untrusted client "
            "certificate) is logged with the peer and the reason, and the connection closed.",
            "As a requestor (C-MOVE sub-operations and storage commitment reports to a "
            "`tls = true` remote, and every command-line SCU with `--tls`), we verify the "
            "peer's certificate and host name and show our certificate when one is set.",
        ),
    ]


def render_access_control(m: Model) -> Lines:
    """PS3.2 "Association Level Security": who may associate and use what (stellarpacs.access)."""
    per_service: dict[str, int] = {}
    for name in m.policy.service_names.values():
        per_service[name] = per_service.get(name, 0) + 1
    rj = {r.name: "/".join(str(int(v)) for v in r.value) for r in RejectReason}
    rows = [
        ("Calling AE title without a `[remotes]` table, `accept_unknown_calling_ae = false`",
         f"A-ASSOCIATE-RJ {rj['CALLING_AE_NOT_RECOGNIZED']}"),
        ("`check_host`: the association comes from another address than the remote's host "
         "(names resolved when the request arrives)",
         f"A-ASSOCIATE-RJ {rj['CALLING_AE_NOT_RECOGNIZED']}"),
        ("A user identity that fails: unknown user, wrong passcode, a JWT whose signature, "
         "issuer, audience or expiry does not verify", f"A-ASSOCIATE-RJ {rj['NO_REASON_GIVEN']}"),
        ("No verified identity where `require_user_identity` (the remote's value first)",
         f"A-ASSOCIATE-RJ {rj['NO_REASON_GIVEN']}"),
        ("Presentation context of a service not in the remote's `services`",
         "result 1, user rejection (PS3.8 9.3.3.2)"),
        ("A request for such a service that arrives anyway (e.g. C-STORE on a storage "
         "context accepted for C-GET)", "status 0124, refused: not authorized (PS3.7 C)"),
        ("C-MOVE to a destination that is unknown or not allowed `store`", "status A801"),
    ]  # fmt: skip
    services = ", ".join(f"{n} ({per_service.get(n, 0)} SOP classes)" for n in SERVICES)
    defaults = (
        f"Defaults: `accept_unknown_calling_ae = {str(m.config.accept_unknown_calling_ae).lower()}`"
        f", `require_user_identity = {str(m.config.require_user_identity).lower()}`, every "
        "service for every AE: as in 1.3, no limitation on who may connect."
    )
    return [
        *heading(
            3, f"4.3 Association Level Security: Access Control and User Identity ({EXTENSION})"
        ),
        *para(defaults, f"Services of `[remotes.<AE>] services`: {services}."),
        *table(("Condition", "Answer"), rows),
        *para(
            "User Identity Negotiation (PS3.7 D.3.3.7) as acceptor: type 1 (user name) names a "
            "`[users]` entry; type 2 (user name and passcode) is checked against its salted "
            "Argon2id `passcode_hash` (made by `hash-passcode`; the passcode is never stored, "
            "logged or shown); type 5 (JWT) is verified against `[jwt]`: its PEM public key, "
            "issuer, audience, expiry and algorithms (default "
            f"{', '.join(JWT_DEFAULT_ALGORITHMS)}; "
            "asymmetric ones only), the user being its `sub`, which need not be a `[users]` "
            "entry. Kerberos (3), SAML (4), and a type with nothing configured to check it "
            "are ignored, as D.3.3.7 lets an acceptor that does not support them, unless an "
            "identity is required, which rejects them. A positive response, when asked for, "
            "is a User Identity sub-item with an empty server response (D.3.3.7.2). Rejections "
            "are 1/1/1 since Table 9-21 has no reason for a failed identity: permanent, from "
            "the service user. No user identity is sent as requestor.",
        ),
    ]


def render_hostile_peers(m: Model) -> Lines:
    """What a hostile peer meets: the limits of issue 12's defects 3, 9 and 10."""
    config = m.config
    return [
        *heading(3, "4.4 Hostile Input: Slow Peers, Idle Connections, Inconsistent Data Sets"),
        *para(
            f"A PDU must arrive whole within {config.pdu_timeout:g} s of its first byte "
            "(`pdu_timeout`), else the association is aborted with A-ABORT source 2 (service "
            "provider) reason 0 (not specified, PS3.8 9.3.8), and the idle limit counts "
            "between whole PDUs only.",
            f"At most {config.max_pending_connections} connections may wait without an "
            "association (`max_pending_connections`); one more closes the oldest of them, so "
            "silent sockets cannot keep a real peer out.",
            "A C-STORE data set whose SOP Class or Instance UID (0008,0016), (0008,0018) is not "
            "its command's is refused, A900 or C000 (PS3.4 B.2.3), and nothing is stored. A "
            "known SOP Instance UID arriving with other content follows `duplicate_policy` "
            f"(`{config.duplicate_policy}`): keep answers B006, reject 0111, replace Success; "
            "each such arrival is logged and kept in the index, and `storage verify` lists it.",
        ),
    ]


def render_extensions(m: Model) -> Lines:
    beyond = set(m.policy.abstract_syntaxes) - set(IN_1_3)
    new_ts = sorted({ts for tss in m.sets for ts in tss} - set(uids.TABLE4_TRANSFER_SYNTAXES))
    new_services = [title for _, title, _ in numbered(m.services) if EXTENSION in title]
    items = [
        (bool(beyond), f"{len(beyond)} SOP classes that 1.3 did not list (section 3.1.3)."),
        (bool(new_ts), f"{len(new_ts)} transfer syntaxes that 1.3 Table 4 did not list (3.1)."),
        *((True, f"The service {title.split(' (')[0]}.") for title in new_services),
        (m.facts.shared, "Several abstract syntaxes per association (3.1.3)."),
        (m.facts.role.scp_role, "The SCP role granted by role selection (3.1.3)."),
        (m.facts.window_of_one, "An asynchronous operations window negotiated down (3.1.1.3)."),
        (True, "Command-line SCU tools (3.1.2.2); a configuration file (6.2)."),
        (True, "TLS, PS3.15 B.12 and B.13 (4.3)."),
        (True, "An audit trail: JSON lines and PS3.15 A.5 audit messages over syslog (9)."),
        (True, "Access control per calling AE and user identity negotiation (9.2)."),
    ]
    return [
        *heading(2, "5 Extensions / Specializations / Privatizations"),
        *para(
            "No private SOP classes, transfer syntaxes or attributes; no specializations. "
            f"Beyond the 1.3 statement, each marked {EXTENSION} where it is described:"
        ),
        *(f"- {text}" for shown, text in items if shown),
        "",
    ]


def render_configuration(m: Model) -> Lines:
    return [
        *heading(2, "6 Configuration"),
        *heading(3, "6.1 AE Title / Presentation Address Mapping"),
        *para(
            f"Our AE title (`ae_title`, default `{m.config.ae_title}`), address and port are "
            "configurable; the peers we connect to are `[remotes.<AE title>]` tables."
        ),
        *heading(3, f"6.2 Configuration Keys ({EXTENSION})"),
        *para(
            "A TOML file (`--config`); command-line flags override it.",
        ),
        *table(("Key", "Type", "Default", "Meaning"), _keys_with_tls()),
    ]


def render_hostile_input(m: Model) -> Lines:
    """What a peer cannot make us hold or crash on (issue 12); the keys are in 6.2."""
    c = m.config
    return [
        *heading(3, "6.3 Hostile Input: Limits"),
        *para(
            "A Deflated Explicit VR Little Endian data set (PS3.5 A.5) is inflated as it is "
            "read, only up to its Pixel Data and at most `max_inflated_header` "
            f"({c.max_inflated_header} bytes); a C-STORE needing more is answered A702 and "
            "not stored. A stored file keeps the deflated bytes as received.",
            "A C-FIND, C-MOVE or C-GET identifier over `max_identifier_size` "
            f"({c.max_identifier_size} bytes), and an N-ACTION, N-CREATE, N-SET or "
            "N-EVENT-REPORT data set over `max_nservice_dataset_size` "
            f"({c.max_nservice_dataset_size} bytes), is drained unread as it arrives and "
            "answered A700 (C-FIND), A701 (C-MOVE, C-GET) or 0213, resource limitation "
            "(N-services); the association goes on. A data set over 64 KiB is parsed in a "
            "worker thread, so other associations are served meanwhile.",
            "A C-ECHO, C-STORE, C-FIND, C-MOVE or C-GET whose Affected SOP Class UID holds "
            "non-ASCII bytes is answered 0122, SOP class not supported, with the context's "
            "SOP class as Affected SOP Class UID.",
        ),
    ]


def _keys_with_tls() -> list[tuple[str, str, str, str]]:
    """Every key, the ``tls.*`` ones right after the ``tls`` table's row."""
    rows = []
    for row in describe_keys():
        rows += [row, *(tls_rows() if row[0] == "tls" else ())]
    return rows


def render_character_sets(m: Model) -> Lines:
    notes = [text_of(service).charset for _, _, service in numbered(m.services)]
    return [
        *heading(2, "7 Support of Extended Character Sets"),
        *para(
            "Data sets are stored as the bytes received, whatever Specific Character Set "
            "(0008,0005) they declare: nothing is converted. The index keeps text values as "
            "decoded from the header, with the Specific Character Set beside them.",
            *notes,
            "AE titles are ASCII (PS3.5 6.2).",
        ),
    ]


def render_notes(m: Model) -> Lines:
    rows = [
        (s.name, s.role, s.section, dimse_names(s.requests), sop_list(s), s.note) for s in m.missing
    ]
    header = ("1.3 service", "Role", "1.3 section", "DIMSE", "SOP classes", "Note")
    return [
        *heading(2, "8 Notes"),
        *heading(3, "8.1 Not yet provided"),
        *(table(header, rows) if rows else para("Every service of the 1.3 statement is provided.")),
    ]


# --- 9 Security: one subsection per concern, numbered in this order -------------------


def security_tls(m: Model) -> Lines:
    settings = m.config.tls
    state = (
        f"on, port {settings.port}"
        + (" only" if settings.only else f" beside plain {m.config.port}")
        if settings.enabled
        else "off until `tls.certificate` is set; plain TCP (4.2) meanwhile"
    )
    return para(
        f"DICOM associations over TLS 1.2 or newer (PS3.15 B.12, B.13), as section 4.3 "
        f"describes: profiles, cipher suites, certificates. In this configuration: {state}. "
        "C-MOVE sub-operations and storage commitment reports to a `tls = true` remote use "
        "TLS as well."
    )


def security_access(m: Model) -> Lines:
    return render_access_control(m)[2:]  # its own heading is this subsection's


def security_audit(m: Model) -> Lines:
    coded = "{} ({}, {})".format
    rows = [
        (
            f"`{name}`",
            kind.section,
            coded(*kind.event_id),
            kind.action,
            coded(*kind.type_code) if kind.type_code else "-",
            who,
        )
        for name, kind, who in describe_messages()
    ]
    header = ("Event", "PS3.15", "EventID", "Action", "EventTypeCode", "Participants, objects")
    return [
        *para(
            f"{EXTENSION}. One record per security-relevant event, in the order they happen: "
            "associations accepted (calling and called AE, peer address, accepted abstract "
            "syntaxes), rejected (result, source, reason and its meaning), released and aborted "
            "(by whom, why); each C-STORE answered (SOP class and instance, study, patient, "
            "calling AE, status); each C-FIND (model, level, the keys asked) and C-MOVE or "
            "C-GET (also the destination, the studies and the sub-operation counts); "
            "`storage delete`; the configuration loaded (its file and SHA-256, never its "
            "values); start and stop.",
        ),
        *para(
            "`audit.file` receives each as one line of JSON (time in UTC, ISO 8601 with `Z`; "
            "`event`; `outcome`; the fields), appended with one write per record. "
            f"Every text is escaped to printable ASCII and cut at {MAX_TEXT} characters, "
            f"lists and query keys at {MAX_ITEMS} items, so a peer cannot forge a record.",
        ),
        *para(
            "`audit.syslog` also sends each as a DICOM Audit Message (PS3.15 A.5.1, the "
            f"EventOutcomeIndicator of A.5.1) in an RFC 5424 frame: PRI {PRI} (facility 10, "
            f"severity 5), APP-NAME our AE title, MSGID `{MSGID}`, no structured data, the XML "
            "as MSG without a BOM; "
            "over UDP one frame per datagram (RFC 5426), over TLS 1.2 or later with "
            "octet-counting framing (RFC 5425), the collector's certificate checked against "
            "`audit.syslog_ca_file` and ours (`audit.syslog_certificate`) shown for mutual "
            "authentication. Sending never delays a DIMSE exchange: records wait in a "
            f"queue of {QUEUE_SIZE}; when it is full or the collector cannot be reached they "
            f"are dropped and counted, with a warning at most once a minute, and a failed TLS "
            f"connection is retried after {RETRY_AFTER:g} s.",
        ),
        *para(
            "The events map to the messages of PS3.15 A.5.3 as follows. An association is "
            "reported as User Authentication, Login when accepted (outcome 0) or rejected "
            "(outcome 4), Logout when released (0) or aborted (8). A configuration loaded is a "
            "Security Alert (Software Configuration). An instance received that was already "
            "stored has action R instead of C.",
        ),
        *table(header, rows),
    ]


def security_hostile(m: Model) -> Lines:
    return [
        *para(
            "Text a peer chooses (AE titles, UIDs, error comments, query values) is escaped and "
            "bounded before it reaches a log line or the audit trail."
        ),
        *render_hostile_peers(m)[2:],
        *render_hostile_input(m)[2:],
    ]


SECURITY = (
    ("TLS", security_tls),
    ("Access control and user identity", security_access),
    ("Audit trail", security_audit),
    ("Hostile input", security_hostile),
)
"""The subsections of section 9, in order; each concern adds its own renderer here."""


def render_security(m: Model) -> Lines:
    lines = [*heading(2, "9 Security")]
    for number, (title, render_part) in enumerate(SECURITY, 1):
        lines += [*heading(3, f"9.{number} {title}"), *render_part(m)]
    return lines


def sop_list(legacy: LegacyService) -> str:
    return "1.3 Table 2" if legacy.sop_classes == tuple(TABLE2) else ", ".join(legacy.sop_classes)


# --- Assembly and command line --------------------------------------------------------


def render(config: Config | None = None) -> str:
    """The whole statement for ``config`` (the defaults unless given)."""
    m = Model.build(config or Config())
    parts = [
        render_title(m),
        render_introduction(m),
        render_model(m),
        render_entity(m),
        render_establishment(m),
        render_initiation(m),
        render_acceptance(m),
        *(render_service(m, *entry) for entry in numbered(m.services)),
        render_profiles(m),
        render_extensions(m),
        render_configuration(m),
        render_character_sets(m),
        render_notes(m),
        render_security(m),
    ]
    return "\n".join(line for part in parts for line in part).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the DICOM conformance statement.")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="default: %(default)s")
    args = parser.parse_args(argv)
    text = render()
    if not args.check:
        args.output.write_text(text, encoding="utf-8")
        return 0
    current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
    if current == text:
        return 0
    diff = difflib.unified_diff(current.splitlines(), text.splitlines(), lineterm="", n=1)
    print(*list(diff)[:40], sep="\n", file=sys.stderr)
    print(f"{args.output} is stale: run python conformance/generate.py", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
