"""What the ``pbb`` commands share: the console, ``--set KEY=VALUE`` parsing, common options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console

from pbb.errors import PbbError

console = Console()
#: notes that must not mix with a command's printed output (``pbb plan ... > plan.txt``)
err_console = Console(stderr=True)

#: what a stop (Ctrl-C, SIGTERM) tells the user, set by a command as it starts work that the
#: same command resumes (:func:`resumable`); None: nothing was under way that a rerun picks up
resume_line: str | None = None


def resumable(what: str) -> None:
    """Say, before a command starts work that it resumes, what a rerun picks up: a stop then
    prints "run the same command again to resume {what}". A command that never calls it (a
    plan, a table written from finished runs) is told "nothing was half-written" instead: every
    file pbb writes is complete or absent, and "resume" would tell its user a run had started."""
    global resume_line
    resume_line = f"run the same command again to resume{what and ' ' + what}"


def parse_assignments(items: list[str] | None, flag: str = "--set") -> dict[str, object]:
    """``["a.b=3", "c=x"]`` -> ``{"a.b": 3, "c": "x"}`` (values parsed as YAML scalars/lists)."""
    out: dict[str, object] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise PbbError(f"{flag} {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            raise PbbError(f"{flag} {item!r}: value is not valid YAML") from None
    return out


# options that several commands share (pbb data ..., export, score)
Out = Annotated[Path, typer.Option("--out", help="output directory")]
Force = Annotated[bool, typer.Option(help="replace --out if it is a folder of this kind that pbb wrote (never anything else)")]
