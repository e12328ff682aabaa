"""Which event loop the bot runs: uvloop where installed (the default), asyncio's on request or without it."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from mediabot import _loop
from mediabot._loop import loop_factory, resolve, running_loop_name, uvloop_available


def test_auto_is_uvloop_where_it_is_installed() -> None:
    assert uvloop_available()  # a dependency of the package on this platform
    assert resolve("auto") == "uvloop"
    assert resolve("uvloop") == "uvloop"
    assert resolve("asyncio") == "asyncio"


def test_without_uvloop_auto_falls_back_and_asking_for_it_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(_loop.importlib.util, "find_spec", lambda name: None if name == "uvloop" else real(name))
    assert not uvloop_available()
    assert resolve("auto") == "asyncio"
    with pytest.raises(RuntimeError, match="uvloop is not installed"):
        resolve("uvloop")


@pytest.mark.parametrize("name", ["uvloop", "asyncio"])
def test_a_runner_with_the_factory_runs_that_kind_of_loop(name: str) -> None:
    async def which() -> str:
        await asyncio.sleep(0)
        return running_loop_name()

    with asyncio.Runner(loop_factory=loop_factory(name)) as runner:  # type: ignore[arg-type]
        assert runner.run(which()) == name
