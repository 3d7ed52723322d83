"""The [tls] table and the remotes' TLS keys: checked at load, errors naming the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stellarpacs.config import Config, RemoteAE, load_config
from stellarpacs.config_tls import TLSConfig, tls_rows
from stellarpacs.errors import ConfigError
from stellarpacs.tls import PROFILES
from tests.integration.tls_fixtures import Certificates, certificates

__all__ = ["certificates"]  # the fixture, imported for pytest

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("key", [row[0] for row in tls_rows()])
def test_every_tls_key_is_documented(key: str) -> None:
    assert f"`{key}`" in README


def test_tls_is_off_by_default() -> None:
    assert not Config().tls.enabled
    assert Config().tls == {}  # the empty [tls] table
    assert Config().tls == TLSConfig()


def test_a_tls_table_loads(tmp_path: Path, certificates: Certificates) -> None:
    c = certificates
    path = tmp_path / "c.toml"
    path.write_text(
        f'[tls]\nport = 2763\nonly = true\ncertificate = "{c.server.cert}"\n'
        f'private_key = "{c.server.key}"\nca_file = "{c.ca}"\nverify_peer = true\n'
        'profile = "basic"\n'
        f'[remotes.DEST]\nhost = "127.0.0.1"\nport = 104\ntls = true\ntls_ca_file = "{c.ca}"\n'
    )
    config = load_config(path)
    assert config.tls.enabled and config.tls.only and config.tls.verify_peer
    assert (config.tls.port, config.tls.profile) == (2763, "basic")
    assert config.remotes["DEST"].tls and config.remotes["DEST"].tls_ca_file == c.ca


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"profile": "tls1"}, "'tls.profile' must be one of bcp195-nd, bcp195, basic"),
        ({"port": 70000}, "'tls.port' must be between 0 and 65535"),
        ({"only": "yes"}, "'tls.only' must be a boolean"),
        ({"certificate": "/nonexistent.pem"}, "'tls.certificate' /nonexistent.pem does not exist"),
        ({"private_key": None}, "'tls.private_key' must be set with 'tls.certificate'"),
        ({"private_key": "STRAY"}, "'tls.private_key' "),
        ({"verify_peer": True, "ca_file": None}, "'tls.ca_file' must be set"),
        ({"ca_file": "KEY"}, "'tls.ca_file' cannot load"),
    ],
)
def test_bad_tls_values_name_the_key(
    certificates: Certificates, values: dict[str, object], message: str
) -> None:
    c = certificates
    given: dict[str, object] = {
        "certificate": c.server.cert, "private_key": c.server.key, "ca_file": c.ca
    }  # fmt: skip
    swap: dict[object, object] = {"STRAY": c.stray_key, "KEY": c.server.key}
    given |= {k: swap.get(v, v) if isinstance(v, str) else v for k, v in values.items()}
    with pytest.raises(ConfigError) as error:
        TLSConfig(**given)  # type: ignore[arg-type]
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["only", "verify_peer", "private_key"])
def test_tls_keys_that_need_a_certificate(name: str) -> None:
    with pytest.raises(ConfigError, match=f"'tls.{name}' needs 'tls.certificate'"):
        TLSConfig(**{name: Path("x.key") if name == "private_key" else True})  # type: ignore[arg-type]


def test_remote_tls_files_are_checked(certificates: Certificates) -> None:
    with pytest.raises(
        ConfigError, match=re.escape("'remotes.DEST.tls_certificate' /no.pem does not exist")
    ):
        RemoteAE("DEST", "h", 104, tls=True, tls_certificate=Path("/no.pem"))
    with pytest.raises(ConfigError, match=re.escape("'remotes.DEST.tls_private_key' needs")):
        RemoteAE("DEST", "h", 104, tls=True, tls_private_key=certificates.client.key)
    plain = RemoteAE("DEST", "h", 104)
    assert not plain.tls and plain.tls_ca_file is None


def test_unknown_tls_key_names_it(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[tls]\nverify = true\n")
    with pytest.raises(ConfigError, match=re.escape("unknown key 'tls.verify'")):
        load_config(path)


def test_every_profile_is_documented() -> None:
    help_text = next(row[3] for row in tls_rows() if row[0] == "tls.profile")
    assert all(name in help_text for name in PROFILES)
