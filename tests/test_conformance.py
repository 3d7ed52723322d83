"""The generated conformance statement is current, and what it claims is what the code does."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from stellarpacs import uids
from stellarpacs.aio.server import Server
from stellarpacs.aio.verification import VerificationService
from stellarpacs.config import Config
from stellarpacs.config_docs import describe_keys
from stellarpacs.services.registry import ServiceSet, default_services
from stellarpacs.services.storage import StoreStatus
from stellarpacs.storage.archive import Archive
from stellarpacs.ul.negotiation import RejectReason

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "conformance" / "generate.py"
DOCUMENT = ROOT / "conformance" / "CONFORMANCE.md"
# SOP classes of the 1.3 services beyond Verification and Storage
LEGACY = (*uids.QR_FIND_MODELS, *uids.QR_MOVE_MODELS, uids.STORAGE_COMMITMENT_PUSH, uids.MPPS)


@pytest.fixture(scope="module")
def generate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("conformance_generate", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def text(generate: ModuleType) -> str:
    rendered: str = generate.render()
    return rendered


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    """Built independently of the generator, as ``python -m stellarpacs serve`` builds it."""
    config = Config()
    archive = Archive(tmp_path_factory.mktemp("unopened"))
    return Server(config, asyncio.run(default_services(config, archive)).services)


def body(text: str) -> str:
    """Everything before section 8, where unprovided services may be named."""
    return text.split("\n## 8 Notes", 1)[0]


def test_document_on_disk_is_current(generate: ModuleType, text: str) -> None:
    assert generate.main(["--check"]) == 0, "run: python conformance/generate.py"
    assert DOCUMENT.read_text(encoding="utf-8") == text


def test_check_mode_fails_on_a_stale_or_missing_file(generate: ModuleType, tmp_path: Path) -> None:
    target = tmp_path / "CONFORMANCE.md"
    assert generate.main(["--check", "--output", str(target)]) == 1
    assert generate.main(["--output", str(target)]) == 0
    assert generate.main(["--check", "--output", str(target)]) == 0
    target.write_text(target.read_text(encoding="utf-8").replace("16384", "32768"))
    assert generate.main(["--check", "--output", str(target)]) == 1


def test_every_served_abstract_syntax_and_transfer_syntax_is_listed(
    server: Server, text: str
) -> None:
    assert server.policy.abstract_syntaxes
    for abstract_syntax, syntaxes in server.policy.abstract_syntaxes.items():
        assert f"| {abstract_syntax} | TS-" in text, abstract_syntax
        for syntax in syntaxes:
            assert f"| {syntax} |" in text, syntax


def test_each_served_class_says_where_13_listed_it_or_is_an_extension(
    server: Server, text: str
) -> None:
    rows = {line.split(" | ")[1]: line for line in text.splitlines() if "| SCP | None |" in line}
    table2 = {sop.uid: sop.name for sop in uids.TABLE2_STORAGE}
    table3 = dict.fromkeys(uids.QR_FIND_MODELS + uids.QR_MOVE_MODELS, "Table 3")
    earlier = {
        uids.VERIFICATION: "Table 1",
        **table3,
        uids.STORAGE_COMMITMENT_PUSH: "3.1.3.3",  # 1.3 gave it a table of its own there
        uids.MPPS: "1 (optional)",  # named in 1.3's introduction only
    }
    for uid in server.policy.abstract_syntaxes:
        if uid in table2:
            expected = f"| Table 2 ({table2[uid]}) |"
        else:
            expected = f"| {earlier.get(uid, '**Extension**')} |"
        assert rows[uid].endswith(expected), rows[uid]


def test_association_policy_numbers_come_from_the_defaults(server: Server, text: str) -> None:
    config = Config()
    assert config.max_pdu_length == 16384
    assert "maximum PDU length we receive is 16384 bytes" in text
    assert f"At most {config.max_associations} simultaneous associations" in text
    assert f"ARTIM timeout {config.artim_timeout:g} s" in text
    assert "is answered 1/1 (invoked/performed)" in text
    for reason in RejectReason:
        result, source, code = reason.value
        assert f"| {result.name} | {source.name} | {code} |" in text


def test_implementation_identity_is_what_the_server_sends(server: Server, text: str) -> None:
    assert server.policy.implementation_class_uid == uids.IMPLEMENTATION_CLASS_UID
    assert server.policy.implementation_version_name == uids.IMPLEMENTATION_VERSION_NAME
    assert f"| Implementation Class UID | {uids.IMPLEMENTATION_CLASS_UID} |" in text
    assert f"| Implementation Version Name | {uids.IMPLEMENTATION_VERSION_NAME} |" in text


def test_statuses_and_configuration_keys(text: str) -> None:
    storage = text.split("Real-World Activity - Storage\n", 1)[1].split("\n##### ", 1)[0]
    for code in (*StoreStatus, 0x0122):
        assert f"| {code:04X} |" in storage
    assert "| 0000 | success | success | always |" in text  # Verification
    for key, *_ in describe_keys():
        assert f"| {key} |" in text


def test_statuses_a_service_declares_are_the_ones_listed(server: Server, text: str) -> None:
    declared = [s for s in server.services if getattr(s, "STATUSES", None)]
    for service in declared:
        for code, when in service.STATUSES.items():  # type: ignore[attr-defined]
            assert f"| {code:04X} |" in text and f"| {when} |" in text


def test_unprovided_services_are_listed_in_notes_and_not_claimed(server: Server, text: str) -> None:
    served = server.policy.abstract_syntaxes
    notes = text.split("### 8.1 Not yet provided", 1)[1]
    for uid in LEGACY:
        assert (uid in body(text)) == (uid in served), uid
        assert (uid in notes) != (uid in served), uid


def test_sections_follow_the_served_services(
    generate: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def verification_only(config: Config, archive: Archive | None = None) -> ServiceSet:
        return ServiceSet([VerificationService()])

    monkeypatch.setattr(generate, "default_services", verification_only)
    text = generate.render()
    assert "3.1.3.1 Real-World Activity - Verification" in text
    assert "Real-World Activity - Storage" not in text
    assert "share an association" not in text
    assert "| Storage | SCP | 3.1.3.2 | C-STORE | 1.3 Table 2 |" in text
    assert "CT Image Storage" not in body(text).split("#### 3.1.3", 1)[1]


def test_a_claim_the_code_breaks_stops_the_generator(
    generate: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    negotiate = generate.negotiate
    monkeypatch.setattr(generate, "negotiate", lambda rq, policy, **_: negotiate(rq, policy))
    with pytest.raises(SystemExit, match="LOCAL_LIMIT_EXCEEDED"):
        generate.render()
