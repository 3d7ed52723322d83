"""The README stays true: every configuration key is documented, every command exists."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from stellarpacs.cli import _parser
from stellarpacs.config_docs import describe_keys

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("key", [row[0] for row in describe_keys()])
def test_every_configuration_key_is_documented(key: str) -> None:
    assert f"`{key}`" in README


def _subcommands() -> set[str]:
    parser = _parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {name for action in actions for name in action.choices}


@pytest.mark.parametrize(
    "command", ["serve", "echo", "store", "find", "move", "get", "commit", "mpps", "storage"]
)
def test_documented_commands_exist(command: str) -> None:
    assert f"python -m stellarpacs {command}" in README or f"[{command}]" in README
    assert command in _subcommands()


def test_ci_runs_the_readme_test_command() -> None:
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "./scripts/test" in README
    assert "exec ./scripts/test" in ci
