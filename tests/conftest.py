"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _graph_contract_dir() -> Path:
    override = os.environ.get("MEDIABOT_GRAPH_CONTRACT")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "graph"


@pytest.fixture(scope="session")
def graph_contract() -> Path:
    """The folder of Microsoft's documented examples, notifications and schemas (../shared/graph)."""
    path = _graph_contract_dir()
    if not (path / "index.json").is_file():
        pytest.fail(f"the Graph contract data is missing at {path} (set MEDIABOT_GRAPH_CONTRACT)")
    return path
