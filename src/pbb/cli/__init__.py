"""The ``pbb`` command line (typer).

Every user error surfaces as a :class:`~pbb.errors.PbbError` and is printed as one line
``error: ...`` with exit code 1; tracebacks are for bugs only. The commands live beside this
file: :mod:`pbb.cli.data` (``pbb data ...``) and :mod:`pbb.cli.runs` (run, plan, sweep, claims,
export, score, report); this module names them and turns errors into exit codes.
"""

from __future__ import annotations

import signal
import sys

import typer

from pbb import dist, interrupts
from pbb.cli import data, options, runs
from pbb.cli.options import parse_assignments
from pbb.errors import PbbError

__all__ = ["app", "main", "parse_assignments"]

# rich_markup_mode None: help as click writes it, for the data group too: paragraphs rewrapped
# to the terminal and an option's help in one wide column (rich's panels kept the docstrings'
# line breaks and cut the help to a third of an 80-column terminal)
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Programming by Backprop: data, training curricula, evaluation, reports.",
                  rich_markup_mode=None)
app.add_typer(data.app, name="data")
for _name, _command in [("run", runs.run_cmd), ("plan", runs.plan_cmd), ("sweep", runs.sweep_cmd),
                        ("claims", runs.claims_cmd), ("export", runs.export_cmd),
                        ("score", runs.score_cmd), ("report", runs.report_cmd)]:
    app.command(_name)(_command)


def _summary(fn) -> str | None:
    """A command's docstring's first paragraph on one line: its line in the command list, whole
    (click would cut it to 45 characters)."""
    return " ".join((fn.__doc__ or "").split("\n\n")[0].split()) or None


for _group in (app, data.app):
    for _info in _group.registered_commands:
        _info.short_help = _info.short_help or _summary(_info.callback)


def _print_version(value: bool) -> None:
    if value:
        import pbb

        print(f"pbb {pbb.__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version,
                                          is_eager=True, help="print pbb's version and exit")) -> None:
    """Programming by Backprop: data, training curricula, evaluation, reports."""


#: what Ctrl-C (or SIGTERM: pbb.interrupts) leaves where the command had not started resumable
#: work (pbb.cli.options.resumable says what a rerun picks up where it had): every file pbb
#: writes is complete or absent (atomic writes, append-only logs repaired on resume)
INTERRUPTED_ELSEWHERE = "nothing was half-written (run the command again)"


def _interrupted() -> None:
    said = "interrupted" if interrupts.received == signal.SIGINT else \
        f"stopped by {interrupts.received.name}"
    print(f"{said}; {options.resume_line or INTERRUPTED_ELSEWHERE}", file=sys.stderr)
    sys.exit(interrupts.exit_code())


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit code 1."""
    interrupts.install()
    options.resume_line = None
    try:
        rc = app(standalone_mode=False)  # returns the exit code of typer.Exit in this mode
        if rc == 130:  # typer turns Ctrl-C into Exit(130) before it reaches the handler below
            _interrupted()
        dist.close()
        sys.exit(rc if isinstance(rc, int) else 0)
    except PbbError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        _interrupted()
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as e:
        # Usage errors (missing option, bad type) carry their own message. typer may vendor its
        # own copy of click, so recognise them by shape rather than by class.
        message = getattr(e, "format_message", None)
        if callable(message) and isinstance(getattr(e, "exit_code", None), int):
            print(f"error: {message()}", file=sys.stderr)
            sys.exit(e.exit_code)
        raise

