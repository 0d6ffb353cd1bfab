"""The command line's one error policy: one line on stderr, the right exit status.

0 on success; 1 for a missing key, a store error or a local file error; 2
for bad usage (click's usage errors, :class:`InvalidKey`, :class:`InvalidURL`,
:class:`InvalidValue`); 130 when interrupted. Never a traceback, unless
``MIRRORKV_DEBUG`` is set and the error is unexpected (a bug).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from ..errors import InvalidKey, InvalidURL, InvalidValue, KeyNotFound, MirrorKVError

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "Group", "report"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_USAGE_ERRORS = (InvalidKey, InvalidURL, InvalidValue)


class _PipeClosed(Exception):
    """The reader of stdout went away (``| head``); not an error worth a message."""


class Group(click.Group):
    """The command group, with one policy for every error: one line, the right exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, turning a closed stdout into :class:`_PipeClosed`."""
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # Click would swallow it and exit itself; turn it into ours first.
            raise _PipeClosed from None

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; exit with the status (or return it if not ``standalone_mode``)."""
        try:
            result = super().main(
                args,
                prog_name or "mirrorkv",
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
            code = result if isinstance(result, int) else EXIT_OK
        except (Exception, KeyboardInterrupt) as exc:
            reported = report(exc)
            if reported is None:
                raise
            code = reported
        if standalone_mode:
            sys.exit(code)
        return code


def report(exc: BaseException) -> int | None:
    """Print ``exc`` as one line on stderr and return the exit status (None: re-raise it)."""
    if isinstance(exc, _PipeClosed):
        _silence_stdout()
        return EXIT_ERROR
    if isinstance(exc, click.exceptions.Abort | KeyboardInterrupt):
        _error("interrupted")
        return EXIT_INTERRUPTED
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        click.echo(exc.format_message(), err=True)
        return exc.exit_code
    if isinstance(exc, click.ClickException):
        message = exc.format_message()
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            message = f"{message.rstrip('.')} (see '{exc.ctx.command_path} --help')"
        _error(message)
        return exc.exit_code
    if isinstance(exc, MirrorKVError):
        _error(str(exc))
        if isinstance(exc, KeyNotFound):
            return EXIT_ERROR
        return EXIT_USAGE if isinstance(exc, _USAGE_ERRORS) else EXIT_ERROR
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        _error(f"{exc.strerror or exc}{where}")
        return EXIT_ERROR
    if os.environ.get("MIRRORKV_DEBUG"):
        return None
    _error(f"unexpected {type(exc).__name__}: {exc} (set MIRRORKV_DEBUG=1 for the traceback)")
    return EXIT_ERROR


def _error(message: str) -> None:
    flat = " ".join(message.strip().splitlines())
    click.echo(f"mirrorkv: error: {flat}", err=True)


def _silence_stdout() -> None:
    # Point stdout at /dev/null so that the interpreter's final flush does not
    # raise BrokenPipeError again (the recipe in Python's signal module docs).
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # a stdout without a descriptor (under a test runner) needs nothing
    finally:
        os.close(devnull)
