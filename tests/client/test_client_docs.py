"""The code blocks of docs/client.md run, against a real (stdlib) server."""

from __future__ import annotations

import io
import re
from pathlib import Path

from fake_servers import SECRET, TOKEN, StdlibEngine

from peersync_server import cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_client_example_runs(stdlib_engine: StdlibEngine) -> None:
    scope = {"URL": stdlib_engine.url, "TOKEN": TOKEN, "SECRET": SECRET}
    exec(compile(_blocks()[0], str(DOC), "exec"), scope)
    assert scope["result"].applied is True
    assert stdlib_engine.model.lock_id is None  # released at the end


def test_adding_a_command_example_runs(stdlib_engine: StdlibEngine) -> None:
    before = list(cli.COMMANDS)
    try:
        exec(compile(_blocks()[1], str(DOC), "exec"), {})
        out, err = io.StringIO(), io.StringIO()
        url = stdlib_engine.url
        status = cli.main(["epochs-demo", url, url], stdout=out, stderr=err)
        assert (status, out.getvalue()) == (0, '{"a": 17, "b": 17}\n'), err.getvalue()
    finally:
        cli.COMMANDS[:] = before


def test_doc_lists_every_registered_command() -> None:
    text = DOC.read_text()
    for command in cli.COMMANDS:
        assert f"peersync {command.name} " in text
