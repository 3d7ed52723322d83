from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stellarpacs.storage.archive import Archive


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "archive"


@pytest.fixture
async def archive(root: Path) -> AsyncIterator[Archive]:
    async with Archive(root) as opened:
        yield opened
