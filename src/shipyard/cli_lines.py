"""What the ``score`` and ``eval`` commands share: reading JSON lines and failing with a
one-line message (exit 1)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import typer


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` in red on stderr; the exit to raise (code 1)."""
    typer.secho(f"error: {message}", fg="red", err=True)
    return typer.Exit(1)


def json_rows(
    lines: Iterator[str], where: str, text: str, fields: tuple[str, ...] = ()
) -> Iterator[dict[str, Any]]:
    """The JSON objects of ``lines`` (blank lines skipped), each with a string ``text`` field
    and every one of ``fields``; the first that is not fails naming ``where`` and its line."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise fail(f"{where} line {number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get(text), str):
            raise fail(f"{where} line {number}: expected an object with a string '{text}'")
        missing = [f for f in fields if f not in row]
        if missing:
            raise fail(f"{where} line {number}: missing {', '.join(missing)}")
        yield row
