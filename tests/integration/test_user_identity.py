"""User identity negotiation (PS3.7 D.3.3.7) with real peers: dcmtk storescu and pynetdicom.

Right credentials associate, with a positive response when asked for (dcmtk
exits 0 with ``-rsp`` only if the AC carries one); wrong ones, or none where
one is required, get A-ASSOCIATE-RJ 1/1/1; the passcode appears in no log.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydicom.uid import ImplicitVRLittleEndian

from stellarpacs.access import User
from stellarpacs.config import RemoteAE
from tests.integration.access_peers import (
    PASSCODE,
    attempt,
    jwt_config,
    make_keys,
    passcode_hash,
    storescu_identity,
)
from tests.integration.conftest import StartServer
from tests.integration.peers import HOST, containing, wait_for_log
from tests.integration.storage_fixtures import synthetic_dataset, write_part10

NO_REASON = (1, 1, 1)
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
pytestmark = pytest.mark.interop


def _ct(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ds = synthetic_dataset(CT_IMAGE_STORAGE, 0)
    return write_part10(ds, folder / "ct.dcm", ImplicitVRLittleEndian)


def _users() -> dict[str, object]:
    return {"users": {"alice": {"passcode_hash": passcode_hash()}}}


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


async def test_dcmtk_user_and_passcode(
    start_server: StartServer, tmp_path: Path, debug_log: pytest.LogCaptureFixture
) -> None:
    server = await start_server(require_user_identity=True, **_users())
    path = _ct(tmp_path / "in")
    ok = await storescu_identity(
        server.port, path, "--user", "alice", "--password", PASSCODE, "-rsp"
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert len(list(server.config.storage.rglob("*.dcm"))) == 1
    await wait_for_log(debug_log, containing("association opened", "user alice (type 2)"))
    wrong = await storescu_identity(server.port, path, "--user", "alice", "--password", "guess")
    assert wrong.returncode != 0
    await wait_for_log(debug_log, containing("rejected", "reason 1", "wrong user or passcode"))
    nobody = await storescu_identity(server.port, path, "--user", "mallory", "--password", PASSCODE)
    assert nobody.returncode != 0
    none = await storescu_identity(server.port, path)
    assert none.returncode != 0
    await wait_for_log(debug_log, containing("rejected", "no user identity"))
    text = "\n".join(r.getMessage() for r in debug_log.records) + debug_log.text
    assert PASSCODE not in text and "guess" not in text
    assert passcode_hash() not in text


async def test_dcmtk_user_name_only(start_server: StartServer, tmp_path: Path) -> None:
    server = await start_server(require_user_identity=True, **_users())
    path = _ct(tmp_path / "in")
    ok = await storescu_identity(server.port, path, "--user", "alice", "-rsp")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    unknown = await storescu_identity(server.port, path, "--user", "eve", "-rsp")
    assert unknown.returncode != 0


async def test_dcmtk_jwt(start_server: StartServer, tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    server = await start_server(require_user_identity=True, jwt=jwt_config(keys))
    path = _ct(tmp_path / "in")
    token = tmp_path / "token.jwt"
    token.write_text(keys.token("bob"))
    ok = await storescu_identity(server.port, path, "--jwt", str(token), "-rsp")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    forged = make_keys(tmp_path, "forger")
    bad_tokens = {
        "forged": forged.token("bob"),
        "audience": keys.token("bob", aud="SOMEONE-ELSE"),
        "issuer": keys.token("bob", iss="https://evil.test"),
        "expired": keys.token("bob", exp=1),
    }
    for name, value in bad_tokens.items():
        token.write_text(value)
        refused = await storescu_identity(server.port, path, "--jwt", str(token), "-rsp")
        assert refused.returncode != 0, name
    assert len(list(server.config.storage.rglob("*.dcm"))) == 1


async def test_pynetdicom_positive_response(start_server: StartServer) -> None:
    server = await start_server(**_users())
    asked = await attempt(server.port, identity=(2, b"alice", PASSCODE.encode(), True))
    assert asked.established and asked.identity_response == b""  # D.3.3.7.2: empty for 2
    silent = await attempt(server.port, identity=(2, b"alice", PASSCODE.encode(), False))
    assert silent.established and silent.identity_response is None
    wrong = await attempt(server.port, identity=(2, b"alice", b"nope", True))
    assert wrong.rejection == NO_REASON and not wrong.established
    # Not required: no identity at all is fine.
    anonymous = await attempt(server.port)
    assert anonymous.established and anonymous.echo_status == 0


@pytest.mark.parametrize("kind", [3, 4])
async def test_kerberos_and_saml_are_ignored_unless_required(
    start_server: StartServer, kind: int
) -> None:
    open_server = await start_server(**_users())
    ignored = await attempt(open_server.port, identity=(kind, b"ticket", b"", True))
    assert ignored.established and ignored.identity_response is None
    closed = await start_server(require_user_identity=True, **_users())
    refused = await attempt(closed.port, identity=(kind, b"ticket", b"", True))
    assert refused.rejection == NO_REASON


async def test_require_user_identity_per_remote(start_server: StartServer) -> None:
    remotes = {
        "STRICT": RemoteAE("STRICT", HOST, 104, require_user_identity=True),
        "OLDCT": RemoteAE("OLDCT", HOST, 104, require_user_identity=False),
    }
    server = await start_server(remotes=remotes, **_users())
    assert (await attempt(server.port, "STRICT")).rejection == NO_REASON
    assert (await attempt(server.port, "STRICT", identity=(1, b"alice", b"", True))).established
    strict = await start_server(remotes=remotes, require_user_identity=True, **_users())
    assert (await attempt(strict.port, "OLDCT")).established
    assert (await attempt(strict.port, "ANYONE")).rejection == NO_REASON


async def test_association_exposes_the_user(start_server: StartServer) -> None:
    server = await start_server(**_users())
    seen: list[User | None] = []
    original = server._answer

    def spy(session, rq, decision):  # type: ignore[no-untyped-def]
        original(session, rq, decision)
        seen.extend(a.user for a in server.associations)

    server._answer = spy  # type: ignore[method-assign]
    outcome = await attempt(server.port, identity=(2, b"alice", PASSCODE.encode(), False))
    assert outcome.established
    assert [(u.name, int(u.identity_type)) for u in seen if u is not None] == [("alice", 2)]


async def test_dcmtk_rsp_fails_without_a_response(
    start_server: StartServer, tmp_path: Path
) -> None:
    """Proof that -rsp is checked: no [users], so the identity is ignored and not answered."""
    server = await start_server()
    path = _ct(tmp_path / "in")
    flags = ("--user", "alice", "--password", PASSCODE)
    assert (await storescu_identity(server.port, path, *flags)).returncode == 0
    assert (await storescu_identity(server.port, path, *flags, "-rsp")).returncode != 0


async def test_hostile_user_names_are_refused_and_escaped(
    start_server: StartServer, server_log: pytest.LogCaptureFixture
) -> None:
    server = await start_server(**_users())
    forged = b"alice\nINFO association opened: \x1b[31m\xff"
    outcome = await attempt(server.port, identity=(2, forged, b"x" * 60000, True))
    assert outcome.rejection == NO_REASON
    await wait_for_log(server_log, containing("rejected", "wrong user or passcode"))
    rejected = [r.getMessage() for r in server_log.records if "rejected" in r.getMessage()]
    assert rejected and all("\n" not in m and "\x1b" not in m for m in rejected)
    name_only = await attempt(server.port, identity=(1, forged, b"", True))
    assert name_only.rejection == NO_REASON
    assert (await attempt(server.port)).established  # and the server goes on
