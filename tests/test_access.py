"""The access rules as pure functions (stellarpacs.access): config + request in, decision out."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from stellarpacs import access
from stellarpacs.access import IdentityVerdict, User, decide, verify_identity
from stellarpacs.config import Config, RemoteAE, load_config
from stellarpacs.config_access import UserEntry
from stellarpacs.dimse.commands import CEchoRQ, CStoreRQ, NActionRQ, NCreateRQ
from stellarpacs.errors import ConfigError
from stellarpacs.uids import MPPS, STORAGE_COMMITMENT_PUSH, VERIFICATION
from stellarpacs.ul.negotiation import RejectReason
from stellarpacs.ul.pdus import AAssociateRQ, UserIdentityAC, UserIdentityRQ, UserIdentityType
from tests.integration.access_peers import PASSCODE, jwt_config, make_keys, passcode_hash

CT = "1.2.840.10008.5.1.4.1.1.2"


def _rq(calling: str = "MODALITY") -> AAssociateRQ:
    return AAssociateRQ("STELLARPACS", calling, ())


def _config(**values: object) -> Config:
    return Config(users={"alice": UserEntry("alice", passcode_hash())}, **values)  # type: ignore[arg-type]


def _type2(passcode: str, name: bytes = b"alice", positive: bool = True) -> UserIdentityRQ:
    return UserIdentityRQ(UserIdentityType.USERNAME_AND_PASSCODE, positive, name, passcode.encode())


def test_defaults_admit_everyone_to_everything() -> None:
    decision = decide(Config(), _rq(), "192.0.2.7")
    assert decision.admission.rejection is None and decision.admission.services is None
    assert decision.user is None


def test_unknown_calling_ae_when_closed() -> None:
    config = Config(accept_unknown_calling_ae=False, remotes={"CT": RemoteAE("CT", "h", 104)})
    assert decide(config, _rq("NOBODY"), "::1").admission.rejection is (
        RejectReason.CALLING_AE_NOT_RECOGNIZED
    )
    assert decide(config, _rq("CT"), "::1").admission.rejection is None


def test_check_host_compares_addresses() -> None:
    remote = RemoteAE("CT", "ct.example", 104, check_host=True)
    config = Config(remotes={"CT": remote})
    addresses = ("10.0.0.5", "fe80::1")
    assert decide(config, _rq("CT"), "10.0.0.5", addresses).admission.rejection is None
    assert decide(config, _rq("CT"), "::ffff:10.0.0.5", addresses).admission.rejection is None
    wrong = decide(config, _rq("CT"), "10.0.0.6", addresses)
    assert wrong.admission.rejection is RejectReason.CALLING_AE_NOT_RECOGNIZED
    assert "10.0.0.6" in wrong.reason
    assert decide(config, _rq("CT"), "10.0.0.5", ()).admission.rejection is not None  # no lookup


def test_services_of_the_remote() -> None:
    config = Config(remotes={"CT": RemoteAE("CT", "h", 104, services=("store",))})
    assert decide(config, _rq("CT"), "h").admission.services == frozenset({"store"})


def test_identity_rules() -> None:
    config = _config()
    ok = verify_identity(config, _type2(PASSCODE))
    assert ok.user == User("alice", UserIdentityType.USERNAME_AND_PASSCODE) and ok.failure is None
    decision = decide(config, _rq(), "h", (), ok)
    assert decision.user == ok.user and decision.admission.user_identity == UserIdentityAC(b"")
    quiet = verify_identity(config, _type2(PASSCODE, positive=False))
    assert decide(config, _rq(), "h", (), quiet).admission.user_identity is None
    for bad in (_type2("guess-7713"), _type2(PASSCODE, b"mallory"), _type2("")):
        verdict = verify_identity(config, bad)
        assert verdict.user is None and verdict.failure
        assert decide(config, _rq(), "h", (), verdict).admission.rejection is (
            RejectReason.NO_REASON_GIVEN
        )
        assert PASSCODE not in verdict.failure and "7713" not in verdict.failure


def test_unsupported_identity_is_ignored_unless_required() -> None:
    kerberos = UserIdentityRQ(UserIdentityType.KERBEROS, True, b"ticket")
    verdict = verify_identity(_config(), kerberos)
    assert verdict == IdentityVerdict()
    assert decide(_config(), _rq(), "h", (), verdict).admission.rejection is None
    strict = _config(require_user_identity=True)
    assert decide(strict, _rq(), "h", (), verdict).admission.rejection is (
        RejectReason.NO_REASON_GIVEN
    )
    jwt_without_table = UserIdentityRQ(UserIdentityType.JWT, True, b"a.b.c")
    assert verify_identity(_config(), jwt_without_table) == IdentityVerdict()


def test_per_remote_requirement_wins() -> None:
    remotes = {
        "STRICT": RemoteAE("STRICT", "h", 1, require_user_identity=True),
        "LAX": RemoteAE("LAX", "h", 1, require_user_identity=False),
    }
    open_config = _config(remotes=remotes)
    assert decide(open_config, _rq("STRICT"), "h").admission.rejection is not None
    assert decide(open_config, _rq("OTHER"), "h").admission.rejection is None
    strict = _config(remotes=remotes, require_user_identity=True)
    assert decide(strict, _rq("LAX"), "h").admission.rejection is None
    assert decide(strict, _rq("OTHER"), "h").admission.rejection is not None


def test_jwt_subject_is_the_user(tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    config = load_config(None, {"jwt": jwt_config(keys)})
    token = UserIdentityRQ(UserIdentityType.JWT, True, keys.token("carol").encode())
    assert verify_identity(config, token).user == User("carol", UserIdentityType.JWT)
    hmac = UserIdentityRQ(UserIdentityType.JWT, True, _hs256_token(keys.public_pem.read_bytes()))
    assert verify_identity(config, hmac).failure  # algorithm confusion refused
    garbage = UserIdentityRQ(UserIdentityType.JWT, True, b"\xff\xfe")
    assert verify_identity(config, garbage).failure


def _hs256_token(secret: bytes) -> bytes:
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "x", "iss": "https://idp.test", "aud": "STELLARPACS"}).encode())
    signature = b64(hmac.new(secret, head + b"." + body, hashlib.sha256).digest())
    return head + b"." + body + b"." + signature


def test_request_service() -> None:
    names, scp_roles = access.service_names((VERIFICATION, CT, STORAGE_COMMITMENT_PUSH, MPPS))
    assert names == {
        VERIFICATION: "echo",
        CT: "store",
        STORAGE_COMMITMENT_PUSH: "commit",
        MPPS: "mpps",
    }
    assert scp_roles == {CT: "get"}
    store = CStoreRQ(message_id=1, affected_sop_class_uid=CT, affected_sop_instance_uid="1.2")
    assert access.request_service(store, VERIFICATION, names) == "store"
    assert access.request_service(CEchoRQ(message_id=1), VERIFICATION, names) == "echo"
    action = NActionRQ(
        message_id=1, requested_sop_class_uid=STORAGE_COMMITMENT_PUSH,
        requested_sop_instance_uid="1.2.840.10008.1.20.1.1", action_type_id=1,
    )  # fmt: skip
    assert access.request_service(action, VERIFICATION, names) == "commit"
    create = NCreateRQ(message_id=1, affected_sop_class_uid=MPPS)
    assert access.request_service(create, VERIFICATION, names) == "mpps"


def test_hash_is_salted_argon2id() -> None:
    first, second = access.hash_passcode(b"same"), access.hash_passcode(b"same")
    assert first != second and first.startswith("$argon2id$")


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[remotes.CT]\nhost = "h"\nport = 104\nservices = ["store", "print"]\n', "'print'"),
        ("[users.alice]\n", "missing 'passcode_hash'"),
        ('[users.alice]\npasscode_hash = "plain"\n', "not an Argon2 hash"),
        ('[jwt]\npublic_key = "missing.pem"\nissuer = "i"\naudience = "a"\n', "jwt.public_key"),
        (
            '[jwt]\npublic_key = "k.pem"\nissuer = "i"\naudience = "a"\nalgorithms = ["HS256"]\n',
            "HS256",
        ),
        ('[remotes.CT]\nhost = "h"\nport = 1\ncheck_host = "yes"\n', "check_host"),
    ],
    ids=["unknown-service", "no-hash", "not-a-hash", "no-key", "hmac", "check-host-type"],
)
def test_bad_access_configuration(tmp_path: Path, toml: str, named: str) -> None:
    (tmp_path / "k.pem").write_bytes(make_keys(tmp_path, "k").public_pem.read_bytes())
    path = tmp_path / "c.toml"
    path.write_text(toml.replace('"k.pem"', f'"{tmp_path / "k.pem"}"'))
    with pytest.raises(ConfigError, match=named) as caught:
        load_config(path)
    assert "\n" not in str(caught.value)


def test_secrets_are_not_in_the_repr(tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    config = _config(jwt=jwt_config(keys))
    text = repr(config) + repr(config.users) + str(config)
    assert passcode_hash() not in text and "BEGIN PUBLIC KEY" not in text
    assert "alice" in repr(config.users) and "passcode_hash" not in repr(config.users["alice"])


def test_a_passcode_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    config = _config(require_user_identity=True)
    for attempt in ("wrong-passcode-xyzzy", PASSCODE):
        verdict = verify_identity(config, _type2(attempt))
        decision = decide(config, _rq(), "h", (), verdict)
        logging.getLogger("stellarpacs.test").warning("%s %s", decision.reason, verdict)
    assert "xyzzy" not in caplog.text and PASSCODE not in caplog.text
