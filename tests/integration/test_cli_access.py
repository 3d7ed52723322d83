"""The command line of access control: ``hash-passcode`` and bad access configuration."""

from __future__ import annotations

import asyncio
import sys
import tomllib
from pathlib import Path

import pytest

from stellarpacs.access import User, verify_identity
from stellarpacs.config import load_config
from stellarpacs.ul.pdus import UserIdentityRQ, UserIdentityType
from tests.integration.test_cli import _one_error_line, cli

SECRET = "pass word with spaces é"


async def _hash(stdin: bytes, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stellarpacs", "hash-passcode", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):
            out, err = await process.communicate(stdin)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_hash_passcode_prints_a_table_that_verifies(tmp_path: Path) -> None:
    code, out, err = await _hash(SECRET.encode() + b"\n", "--user", "alice")
    assert code == 0, err
    assert SECRET not in out + err
    assert out.splitlines()[0] == "[users.alice]"
    assert tomllib.loads(out)["users"]["alice"]["passcode_hash"].startswith("$argon2id$")
    path = tmp_path / "c.toml"
    path.write_text(out)
    config = load_config(path)
    item = UserIdentityRQ(
        UserIdentityType.USERNAME_AND_PASSCODE, False, b"alice", SECRET.encode("utf-8")
    )
    assert verify_identity(config, item).user == User(
        "alice", UserIdentityType.USERNAME_AND_PASSCODE
    )


async def test_hash_passcode_refuses_an_empty_passcode_and_argv() -> None:
    code, out, err = await _hash(b"")
    assert code == 2 and not out and "no passcode" in err
    code, _, err = await _hash(b"x\n", SECRET)  # a passcode on the command line is refused
    assert code == 2 and "unrecognized arguments" in err


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[remotes.CT]\nhost = "h"\nport = 104\nservices = ["fax"]\n', "unknown service 'fax'"),
        ("[users.alice]\n", "'users.alice' is missing 'passcode_hash'"),
        ('[jwt]\npublic_key = "nowhere.pem"\nissuer = "i"\naudience = "a"\n', "'jwt.public_key'"),
    ],
    ids=["unknown-service", "no-passcode-hash", "jwt-key-missing"],
)
async def test_bad_access_configuration_is_one_line(tmp_path: Path, toml: str, named: str) -> None:
    config = tmp_path / "stellarpacs.toml"
    config.write_text(toml)
    result = await cli("serve", "--config", str(config), "--storage", str(tmp_path / "data"))
    assert result.returncode == 2
    line = _one_error_line(result)
    assert named in line and str(config) in line
    assert not (tmp_path / "data").exists()
