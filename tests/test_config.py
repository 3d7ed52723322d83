"""Config: defaults, the TOML loader, overrides and every validation message."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stellarpacs import uids
from stellarpacs.audit.settings import AuditSettings
from stellarpacs.config import Config, RemoteAE, load_config
from stellarpacs.config_docs import DEFAULT_CONFIG_TOML, describe_keys
from stellarpacs.errors import ConfigError

FULL_FILE = """\
ae_title = "ARCHIVE1"
host = "127.0.0.1"
port = 4242
storage = "/srv/dicom"
max_associations = 3
max_pdu_length = 65536
log_level = "debug"
accept_any_called_ae = true
artim_timeout = 5
idle_timeout = 0
dimse_timeout = 12.5
connect_timeout = 2.0
transfer_syntax_preference = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.4.90"]
storage_sop_classes = ["1.2.840.10008.5.1.4.1.1.2", "1.2.826.0.1.3680043.9.1"]
fsync = false
case_insensitive_person_names = false

[remotes.STORESCP]
host = "192.0.2.10"
port = 104

[remotes."VIEWER 2"]
host = "viewer.example"
port = 11113
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stellarpacs.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    return message


# --- Defaults ------------------------------------------------------------------------


def test_defaults() -> None:
    config = Config()
    assert config.ae_title == "STELLARPACS"
    assert config.host == "0.0.0.0"
    assert config.port == 11112
    assert config.storage == Path("stellarpacs-data")
    assert config.max_associations == 10
    assert config.max_pdu_length == 16384
    assert config.log_level == "INFO"
    assert config.accept_any_called_ae is False
    assert (config.artim_timeout, config.idle_timeout) == (30.0, 600.0)
    assert (config.dimse_timeout, config.connect_timeout) == (60.0, 10.0)
    assert config.transfer_syntax_preference == uids.STORAGE_TRANSFER_SYNTAXES
    assert config.storage_sop_classes == uids.STORAGE_SOP_CLASSES
    assert dict(config.remotes) == {}
    assert config.fsync is True
    assert config.case_insensitive_person_names is True


def test_no_file_gives_the_defaults() -> None:
    assert load_config(None) == Config()


def test_default_toml_loads_to_the_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, DEFAULT_CONFIG_TOML)) == Config()


def test_default_toml_sets_or_documents_every_key() -> None:
    data = tomllib.loads(DEFAULT_CONFIG_TOML)
    assert data["port"] == 11112
    assert data["transfer_syntax_preference"] == list(uids.STORAGE_TRANSFER_SYNTAXES)
    for field in dataclasses.fields(Config):
        assert field.name in DEFAULT_CONFIG_TOML
    assert "# [remotes.STORESCP]" in DEFAULT_CONFIG_TOML


def test_config_is_hashable_and_compares_by_value() -> None:
    assert hash(Config()) == hash(Config())
    assert Config(port=1) != Config()


# --- A full file ----------------------------------------------------------------------


def test_full_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL_FILE))
    assert config.ae_title == "ARCHIVE1"
    assert config.host == "127.0.0.1"
    assert config.port == 4242
    assert config.storage == Path("/srv/dicom")
    assert config.max_associations == 3
    assert config.max_pdu_length == 65536
    assert config.log_level == "DEBUG"
    assert config.accept_any_called_ae is True
    assert config.artim_timeout == 5.0
    assert isinstance(config.artim_timeout, float)
    assert (config.idle_timeout, config.dimse_timeout, config.connect_timeout) == (0, 12.5, 2.0)
    assert config.transfer_syntax_preference == (
        uids.IMPLICIT_VR_LITTLE_ENDIAN,
        uids.JPEG_2000_LOSSLESS,
    )
    assert config.storage_sop_classes == ("1.2.840.10008.5.1.4.1.1.2", "1.2.826.0.1.3680043.9.1")
    assert config.fsync is False
    assert config.case_insensitive_person_names is False


def test_remotes(tmp_path: Path) -> None:
    remotes = load_config(write(tmp_path, FULL_FILE)).remotes
    assert set(remotes) == {"STORESCP", "VIEWER 2"}
    assert remotes["STORESCP"] == RemoteAE("STORESCP", "192.0.2.10", 104)
    assert remotes["VIEWER 2"].host == "viewer.example"
    assert remotes["VIEWER 2"].port == 11113
    with pytest.raises(TypeError):
        remotes["OTHER"] = RemoteAE("OTHER", "h", 1)  # type: ignore[index]


def test_remote_titles_lose_their_padding(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[remotes." PEER "]\nhost = "h"\nport = 104\n'))
    assert dict(config.remotes) == {"PEER": RemoteAE("PEER", "h", 104)}


def test_file_encoded_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbfport = 1234\n")
    assert load_config(path).port == 1234


def test_storage_expands_the_home_directory(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'storage = "~/dicom"\n'))
    assert config.storage == Path.home() / "dicom"


# --- Overrides ----------------------------------------------------------------------------


def test_overrides_beat_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_FILE)
    config = load_config(path, {"port": 0, "ae_title": "CLI", "storage": "data", "fsync": True})
    assert config.port == 0
    assert config.ae_title == "CLI"
    assert config.storage == Path("data")
    assert config.fsync is True
    assert config.host == "127.0.0.1"  # not overridden


def test_none_overrides_are_ignored(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL_FILE), {"port": None, "log_level": None})
    assert config.port == 4242
    assert config.log_level == "DEBUG"


def test_overrides_without_a_file() -> None:
    assert load_config(None, {"max_associations": 2}).max_associations == 2


def test_unknown_override_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'prot'; did you mean 'port'\?"):
        load_config(None, {"prot": 1})


def test_bad_override_is_not_blamed_on_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_FILE)
    with pytest.raises(ConfigError) as info:
        load_config(path, {"port": 70000})
    assert str(info.value).startswith("'port'")
    assert str(path) not in str(info.value)


def test_bad_file_value_names_the_file(tmp_path: Path) -> None:
    message = error_of(tmp_path, "port = 70000\n")
    assert message.startswith(str(tmp_path / "stellarpacs.toml"))


# --- Validation: one line that names the key ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("prot = 1", ["unknown key 'prot'", "did you mean 'port'?"]),
        ("max_association = 1", ["unknown key 'max_association'", "'max_associations'"]),
        ("zzzz = 1", ["unknown key 'zzzz'"]),
        ("[server]\nport = 1", ["unknown key 'server'"]),
        ('port = "11112"', ["'port'", "must be an integer", "a string ('11112')"]),
        ("port = true", ["'port'", "must be an integer", "a boolean (true)"]),
        ("port = 1.5", ["'port'", "must be an integer", "a float (1.5)"]),
        ("fsync = 1", ["'fsync'", "must be a boolean", "an integer (1)"]),
        ('accept_any_called_ae = "yes"', ["'accept_any_called_ae'", "boolean"]),
        ('artim_timeout = "30"', ["'artim_timeout'", "a number of seconds", "a string"]),
        ("artim_timeout = false", ["'artim_timeout'", "a boolean (false)"]),
        ("idle_timeout = nan", ["'idle_timeout'", "finite"]),
        ("dimse_timeout = inf", ["'dimse_timeout'", "finite"]),
        ("artim_timeout = 0", ["'artim_timeout'", "more than 0"]),
        ("idle_timeout = -1", ["'idle_timeout'", "0 (no limit) or more"]),
        ("connect_timeout = -0.5", ["'connect_timeout'", "0 (no limit) or more"]),
        ('ae_title = ""', ["'ae_title'", "must not be empty"]),
        ('ae_title = "    "', ["'ae_title'", "must not be empty"]),
        ('ae_title = "ABCDEFGHIJKLMNOPQ"', ["'ae_title'", "at most 16", "got 17"]),
        ('ae_title = "PACSÉ"', ["'ae_title'", "must be ASCII"]),
        ('ae_title = "A\\\\B"', ["'ae_title'", "backslash"]),
        ('ae_title = "A\\tB"', ["'ae_title'", "control"]),
        ('ae_title = "A\\u007fB"', ["'ae_title'", "control"]),
        ("ae_title = 5", ["'ae_title'", "must be a string"]),
        ('host = ""', ["'host'", "host name"]),
        ('host = "a b"', ["'host'", "without spaces"]),
        ("port = 65536", ["'port'", "between 0 and 65535", "got 65536"]),
        ("port = -1", ["'port'", "between 0 and 65535"]),
        ("max_associations = 0", ["'max_associations'", "between 1 and"]),
        ("max_pdu_length = 100", ["'max_pdu_length'", "0 (no limit) or 4096"]),
        ("max_pdu_length = 4294967296", ["'max_pdu_length'", "4294967295"]),
        ('log_level = "VERBOSE"', ["'log_level'", "DEBUG, INFO, WARNING, ERROR", "'VERBOSE'"]),
        ('storage = ""', ["'storage'", "non-empty path"]),
        ("storage = 5", ["'storage'", "path", "an integer (5)"]),
        ("transfer_syntax_preference = []", ["'transfer_syntax_preference'", "at least one"]),
        (
            'transfer_syntax_preference = ["1.2.3"]',
            ["'transfer_syntax_preference'", "unknown transfer syntax UID '1.2.3'"],
        ),
        (
            'transfer_syntax_preference = ["1.2.840.10008.1.2", "1.2.840.10008.1.2"]',
            ["'transfer_syntax_preference'", "twice"],
        ),
        ('transfer_syntax_preference = "1.2.840.10008.1.2"', ["array of UID strings"]),
        ("transfer_syntax_preference = [1, 2]", ["'transfer_syntax_preference'", "array"]),
        ('storage_sop_classes = ["1.02.3"]', ["'storage_sop_classes'", "invalid UID '1.02.3'"]),
        (
            'storage_sop_classes = ["1.2.3", "1.2.3"]',
            ["'storage_sop_classes'", "'1.2.3' twice"],
        ),
        ("remotes = 5", ["'remotes'", "table"]),
        ("[remotes]\nPEER = 5", ["'remotes.PEER'", "table with host and port"]),
        ("[remotes.PEER]\nport = 104", ["'remotes.PEER'", "missing 'host'"]),
        ('[remotes.PEER]\nhost = "h"', ["'remotes.PEER'", "missing 'port'"]),
        (
            '[remotes.PEER]\nhots = "h"\nport = 1',
            ["unknown key 'remotes.PEER.hots'", "did you mean 'host'?"],
        ),
        ('[remotes.PEER]\nhost = "h"\nport = 0', ["'remotes.PEER.port'", "between 1 and 65535"]),
        ('[remotes.PEER]\nhost = "h"\nport = "104"', ["'remotes.PEER.port'", "integer"]),
        ("[remotes.PEER]\nhost = 7\nport = 104", ["'remotes.PEER.host'", "string"]),
        (
            '[remotes.PEER]\nhost = "h"\nport = 1\n[remotes." PEER"]\nhost = "h"\nport = 1',
            ["'remotes. PEER'", "repeats AE title 'PEER'"],
        ),
        (
            '[remotes.ABCDEFGHIJKLMNOPQR]\nhost = "h"\nport = 104',
            ["'remotes.ABCDEFGHIJKLMNOPQR'", "at most 16"],
        ),
    ],
)
def test_validation_errors(tmp_path: Path, text: str, expected: list[str]) -> None:
    message = error_of(tmp_path, text + "\n")
    for part in expected:
        assert part in message


@pytest.mark.parametrize(
    ("text", "attribute", "value"),
    [
        ("port = 0", "port", 0),
        ("max_pdu_length = 0", "max_pdu_length", 0),
        ("max_pdu_length = 4096", "max_pdu_length", 4096),
        ('log_level = "warning"', "log_level", "WARNING"),
        ('ae_title = "  PACS  "', "ae_title", "PACS"),
        ('ae_title = "ABCDEFGHIJKLMNOP"', "ae_title", "ABCDEFGHIJKLMNOP"),
        ("storage_sop_classes = []", "storage_sop_classes", ()),
        ('host = "::"', "host", "::"),
    ],
)
def test_edge_values_accepted(tmp_path: Path, text: str, attribute: str, value: object) -> None:
    assert getattr(load_config(write(tmp_path, text + "\n")), attribute) == value


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.toml"):
        load_config(tmp_path / "nope.toml")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file") as info:
        load_config(tmp_path)  # a directory
    assert "\n" not in str(info.value)


def test_invalid_toml_gives_the_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, 'ae_title = "A"\nport = \n')
    assert "invalid TOML" in message
    assert "line 2" in message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('ae_title = "PACSÉ"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


# --- Construction in code -----------------------------------------------------------------


def test_construction_in_code_is_checked_too() -> None:
    with pytest.raises(ConfigError, match="'port'"):
        Config(port=70000)
    with pytest.raises(ConfigError, match="'ae_title'"):
        Config(ae_title="A" * 17)


def test_construction_in_code_normalises() -> None:
    config = Config(
        storage="x",  # type: ignore[arg-type]
        transfer_syntax_preference=[uids.IMPLICIT_VR_LITTLE_ENDIAN],  # type: ignore[arg-type]
        remotes={"PEER": RemoteAE("PEER", "h", 104)},
    )
    assert config.storage == Path("x")
    assert config.transfer_syntax_preference == (uids.IMPLICIT_VR_LITTLE_ENDIAN,)
    with pytest.raises(TypeError):
        config.remotes["X"] = RemoteAE("X", "h", 1)  # type: ignore[index]


def test_remote_key_must_match_its_title() -> None:
    with pytest.raises(ConfigError, match=r"'remotes\.PEER' holds AE title 'OTHER'"):
        Config(remotes={"PEER": RemoteAE("OTHER", "h", 104)})


def test_remote_values_must_be_remote_aes() -> None:
    with pytest.raises(ConfigError, match=r"'remotes\.PEER' must be a RemoteAE"):
        Config(remotes={"PEER": ("h", 104)})  # type: ignore[dict-item]


def test_frozen() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]
    remote = RemoteAE("PEER", "h", 104)
    with pytest.raises(dataclasses.FrozenInstanceError):
        remote.port = 1  # type: ignore[misc]


@settings(max_examples=200)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=16))
def test_printable_ascii_ae_titles(title: str) -> None:
    stripped = title.strip(" ")
    if stripped and "\\" not in stripped:
        assert Config(ae_title=title).ae_title == stripped
    else:
        with pytest.raises(ConfigError, match="'ae_title'"):
            Config(ae_title=title)


@settings(max_examples=200)
@given(st.text(min_size=1, max_size=16).filter(lambda t: any(ord(c) < 0x20 for c in t.strip())))
def test_ae_titles_with_control_characters_are_refused(title: str) -> None:
    with pytest.raises(ConfigError, match="'ae_title'"):
        Config(ae_title=title)


# --- Documentation rows ------------------------------------------------------------------


def test_describe_keys_covers_every_field() -> None:
    rows = describe_keys()
    names = [field.name for field in dataclasses.fields(Config)]
    keys = [row[0] for row in rows]
    audit = [f"audit.{field.name}" for field in dataclasses.fields(AuditSettings)]
    names = [*names[: names.index("audit")], *audit, *names[names.index("audit") + 1 :]]
    assert keys == [*names[:-1], "remotes.<AE title>"]
    assert all(row[1] and row[2] and row[3] for row in rows)


def test_describe_keys_defaults_are_toml_for_scalars() -> None:
    defaults = Config()
    for key, _, shown, _ in describe_keys():
        if key in {"transfer_syntax_preference", "storage_sop_classes", "remotes.<AE title>"}:
            continue
        value = tomllib.loads(f"x = {shown}")["x"]
        table, _, name = key.rpartition(".")  # a key of a table: [audit] file
        expected = getattr(getattr(defaults, table) if table else defaults, name)
        assert value == (str(expected) if isinstance(expected, Path) else expected)
