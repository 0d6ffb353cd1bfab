"""The ``mirrorkv`` command line: drive any store by URL from the shell.

Each command parses its arguments, makes one library call and formats the
result; no storage logic lives here (whole-store work is in
:mod:`mirrorkv.bulk`). Output is human-readable by default (rich on a
terminal, plain text when piped) and JSON with ``--json``.

Exit status: 0 on success; 1 for a missing key, a store error or a local
file error; 2 for bad usage (unknown option, invalid key, URL or value);
130 when interrupted. Every error is one line on stderr
(``mirrorkv: error: ...``), never a traceback (set ``MIRRORKV_DEBUG=1`` to
see the traceback of an unexpected error). When the reader of stdout goes
away (``mirrorkv ls -r | head``) the command stops quietly with status 1.
"""

from __future__ import annotations

import itertools
import json
import mimetypes
import os
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import click
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from . import __version__, bulk
from . import open as open_store
from .errors import InvalidKey, InvalidURL, InvalidValue, KeyNotFound, MirrorKVError
from .meta import Meta
from .store import CHUNK_SIZE, Store
from .urls import parse_url

__all__ = ["cli", "main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_USAGE_ERRORS = (InvalidKey, InvalidURL, InvalidValue)


# -- error handling ---------------------------------------------------------


class _PipeClosed(Exception):
    """The reader of stdout went away (``| head``); not an error worth a message."""


class _Group(click.Group):
    """The command group, with one policy for every error: one line, the right exit status."""

    def invoke(self, ctx: click.Context) -> Any:
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
            reported = _report(exc)
            if reported is None:
                raise
            code = reported
        if standalone_mode:
            sys.exit(code)
        return code


def _report(exc: BaseException) -> int | None:
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


# -- output -----------------------------------------------------------------


@dataclass
class _Settings:
    """The global options, shared by every command through click's context object."""

    url: str | None = None
    json: bool = False


class _Output:
    """Writes results as JSON, as rich text on a terminal, or as plain text when piped."""

    def __init__(self, settings: _Settings) -> None:
        self.json = settings.json
        self.console = Console(highlight=False, soft_wrap=True)
        self.rich = not self.json and self.console.is_terminal

    def line(self, *parts: tuple[str, str]) -> None:
        """One line of ``(text, style)`` parts; styles show only on a terminal."""
        if self.rich:
            self.console.print(Text.assemble(*parts))
        else:
            click.echo("".join(text for text, _ in parts))

    def document(self, value: Any) -> None:
        """One JSON document."""
        click.echo(json.dumps(value, indent=2, ensure_ascii=False))

    def array(self, items: Iterable[Any]) -> None:
        """A JSON array written item by item, so a long listing is never held whole."""
        separator = "\n  "
        click.echo("[", nl=False)
        for item in items:
            click.echo(separator + json.dumps(item, ensure_ascii=False), nl=False)
            separator = ",\n  "
        click.echo("]" if separator == "\n  " else "\n]")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], right: int = 0) -> None:
        """A table: ruled on a terminal, space-aligned columns without a header when piped.

        The first ``right`` columns are right-aligned (numbers).
        """
        if self.rich:
            table = Table(box=box.SIMPLE_HEAD, header_style="bold")
            for index, header in enumerate(headers):
                table.add_column(header, justify="right" if index < right else "left")
            for row in rows:
                table.add_row(*(Text(cell) for cell in row))
            self.console.print(table)
            return
        widths = [max((len(row[i]) for row in rows), default=0) for i in range(len(headers))]
        for row in rows:
            cells = [
                cell.rjust(width) if index < right else cell.ljust(width)
                for index, (cell, width) in enumerate(zip(row[:-1], widths, strict=False))
            ]
            click.echo("  ".join([*cells, row[-1]]))


def _shown(key: str) -> str:
    """A key safe to show on a terminal: control characters appear as escapes."""
    if key.isprintable():
        return key
    return "".join(
        char.encode("unicode_escape").decode("ascii")
        if unicodedata.category(char) == "Cc"
        else char
        for char in key
    )


def human_size(size: int) -> str:
    """A byte count for people: ``512 B``, ``1.5 KiB``, ``3.0 GiB``."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    unit = "B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):  # noqa: B007 - the last unit is kept
        value /= 1024
        if value < 1024:
            break
    return f"{value:.1f} {unit}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _meta_json(meta: Meta) -> dict[str, Any]:
    fields = meta.as_dict()
    fields["modified"] = meta.modified.isoformat()
    return fields


def _shown_url(url: str) -> str:
    """A store URL safe to print: no password, no query string (options may hold secrets)."""
    parsed = parse_url(url)
    if parsed.password is not None:
        return parsed.redacted()
    return url.split("?", 1)[0]


_F = TypeVar("_F", bound=Callable[..., Any])


@contextmanager
def _store(settings: _Settings) -> Iterator[Store]:
    with open_store(settings.url) as store:
        yield store


def _json_flag(command: _F) -> _F:
    """``--json`` after the command name too (``mirrorkv ls --json``)."""

    def remember(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            ctx.ensure_object(_Settings).json = True

    return click.option(
        "--json",
        is_flag=True,
        expose_value=False,
        callback=remember,
        help="Print machine-readable JSON.",
    )(command)


# -- the commands -----------------------------------------------------------


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--url",
    metavar="URL",
    help="The store to use, e.g. sqlite:///srv/app.db or file:///srv/blobs "
    "(default: $MIRRORKV_URL, else sqlite:mirrorkv.db).",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.version_option(
    __version__, "--version", prog_name="mirrorkv", message="%(prog)s %(version)s"
)
@click.pass_context
def cli(ctx: click.Context, url: str | None, as_json: bool) -> None:
    """Drive any mirrorkv store from the shell.

    The store is named by --url; see each command's --help.
    """
    ctx.obj = _Settings(url, as_json)


@cli.command("ls")
@click.argument("prefix", default="")
@click.option("-l", "long", is_flag=True, help="Long format: size, modified (UTC), type, key.")
@click.option("-r", "recursive", is_flag=True, help="Every key under PREFIX, at any depth.")
@_json_flag
@click.pass_obj
def ls_command(settings: _Settings, prefix: str, long: bool, recursive: bool) -> None:
    """List the keys under PREFIX.

    Without -r, one level as S3 lists it: the common prefixes ending in '/'
    first, then the values at this level. PREFIX matches as a string, so
    'photos' also shows 'photos.txt'; use 'photos/' for the level below.
    """
    out = _Output(settings)
    with _store(settings) as store:
        if recursive:
            _print_listing(out, (), store.list(prefix), long)
        else:
            listing = store.ls(prefix, "/")
            _print_listing(out, listing.prefixes, listing.objects, long)


def _print_listing(
    out: _Output, prefixes: Iterable[str], objects: Iterable[Meta], long: bool
) -> None:
    if out.json:
        out.array(
            itertools.chain(
                ({"type": "prefix", "key": prefix} for prefix in prefixes),
                ({"type": "object", **_meta_json(meta)} for meta in objects),
            )
        )
        return
    for prefix in prefixes:
        lead = f"{'PRE':>10}  {'':19}  {'':24}  " if long else ""
        out.line((lead, "dim"), (_shown(prefix), "bold blue"))
    for meta in objects:
        if not long:
            out.line((_shown(meta.key), ""))
            continue
        out.line(
            (f"{human_size(meta.size):>10}  ", "cyan"),
            (f"{meta.modified:%Y-%m-%d %H:%M:%S}  ", "green"),
            (f"{meta.content_type:<24}  ", "magenta"),
            (_shown(meta.key), ""),
        )


@cli.command("get")
@click.argument("key")
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write the value to FILE (atomically) instead of stdout.",
)
@_json_flag
@click.pass_obj
def get_command(settings: _Settings, key: str, output: str | None) -> None:
    """Write the value of KEY to stdout or to a file.

    The value is streamed and binary-safe. With -o, --json reports the key, size and file instead.
    """
    with _store(settings) as store:
        if output is None or output == "-":
            sink = sys.stdout.buffer
            with store.open(key) as stream:
                while chunk := stream.read(CHUNK_SIZE):
                    sink.write(chunk)
            sink.flush()
            return
        size = store.get_file(key, output)
    out = _Output(settings)
    if out.json:
        out.document({"key": key, "size": size, "file": output})
    else:
        out.line((_shown(key), "bold"), (f" -> {output} ({human_size(size)})", ""))


def _metadata_pairs(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}")
        pairs[name] = value
    return pairs


@cli.command("put")
@click.argument("key")
@click.argument(
    "file",
    required=False,
    metavar="[FILE|-]",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
)
@click.option(
    "-t",
    "--content-type",
    metavar="CT",
    help="Content type to record (default: guessed from FILE's name, else KEY's).",
)
@click.option(
    "-m",
    "--metadata",
    metavar="NAME=VALUE",
    multiple=True,
    callback=_metadata_pairs,
    help="User metadata to record; repeat for more.",
)
@_json_flag
@click.pass_obj
def put_command(
    settings: _Settings,
    key: str,
    file: str | None,
    content_type: str | None,
    metadata: dict[str, str],
) -> None:
    """Store a file, or stdin, under KEY.

    Reads FILE, or stdin when FILE is '-' or absent, streamed. Prints the
    key, size and etag of what was stored.
    """
    from_stdin = file is None or file == "-"
    if file is None and sys.stdin.isatty():
        raise click.UsageError("name a FILE, or pipe the value in (or pass '-' to type it)")
    if content_type is None:
        content_type = mimetypes.guess_type(key if from_stdin else str(file))[0]
    source: str | IO[bytes] = sys.stdin.buffer if from_stdin else str(file)
    with _store(settings) as store:
        meta = store.put_file(key, source, content_type=content_type, metadata=metadata)
    out = _Output(settings)
    if out.json:
        out.document(_meta_json(meta))
    else:
        out.line(
            (_shown(meta.key), "bold"),
            (f"  {human_size(meta.size)}", "cyan"),
            (f"  etag {meta.etag}", "dim"),
        )


@cli.command("rm")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@_json_flag
@click.pass_obj
def rm_command(settings: _Settings, keys: tuple[str, ...]) -> None:
    """Delete each KEY. Keys that do not exist are not an error (like rm -f).

    Prints nothing; --json lists the keys now absent.
    """
    with _store(settings) as store:
        store.delete_many(keys)
    out = _Output(settings)
    if out.json:
        out.document({"deleted": list(keys)})


@cli.command("stat")
@click.argument("key")
@_json_flag
@click.pass_obj
def stat_command(settings: _Settings, key: str) -> None:
    """Show the metadata of KEY.

    Size, etag, modified (UTC), content type, version and user metadata.
    """
    with _store(settings) as store:
        meta = store.head(key)
    out = _Output(settings)
    if out.json:
        out.document(_meta_json(meta))
        return
    rows = [
        ("key", _shown(meta.key)),
        ("size", f"{meta.size} ({human_size(meta.size)})"),
        ("etag", meta.etag),
        ("modified", meta.modified.isoformat()),
        ("content type", meta.content_type),
        ("version", meta.version),
        *((f"metadata.{name}", _shown(value)) for name, value in sorted(meta.metadata.items())),
    ]
    out.table(("field", "value"), rows)


@contextmanager
def _copy_progress(out: _Output) -> Iterator[Callable[[Meta], None] | None]:
    """A progress bar on stderr while copying, if stderr is a terminal and not --json."""
    console = Console(stderr=True)
    if out.json or not console.is_terminal:
        yield None
        return
    columns = (
        SpinnerColumn(),
        BarColumn(),
        TextColumn("{task.fields[objects]} objects"),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("copy", total=None, objects=0)
        copied = 0

        def advance(meta: Meta) -> None:
            nonlocal copied
            copied += 1
            bar.update(task, advance=meta.size, objects=copied)

        yield advance


@cli.command("cp")
@click.argument("source_url", metavar="SRC_URL")
@click.argument("target_url", metavar="DST_URL")
@click.argument("prefix", default="")
@_json_flag
@click.pass_obj
def cp_command(settings: _Settings, source_url: str, target_url: str, prefix: str) -> None:
    """Copy the values under PREFIX from one store to another.

    From the store SRC_URL to the store DST_URL, any kind to any kind;
    keys, content types and metadata are kept. Shows a progress bar on a
    terminal and a summary at the end.
    """
    out = _Output(settings)
    with (
        open_store(source_url) as source,
        open_store(target_url) as target,
        _copy_progress(out) as progress,
    ):
        report = bulk.copy_all(source, target, prefix, progress=progress)
    shown_source, shown_target = _shown_url(source_url), _shown_url(target_url)
    if out.json:
        out.document(
            {
                "source": shown_source,
                "target": shown_target,
                "prefix": prefix,
                "objects": report.objects,
                "bytes": report.bytes,
                "skipped": report.skipped,
            }
        )
        return
    skipped = f", skipped {report.skipped} deleted meanwhile" if report.skipped else ""
    out.line(
        ("copied ", ""),
        (f"{_plural(report.objects, 'object')} ({human_size(report.bytes)})", "bold"),
        (f" from {shown_source} to {shown_target}{skipped}", ""),
    )


@cli.command("du")
@click.argument("prefix", default="")
@click.option(
    "-d",
    "--depth",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Break the total down this many levels of '/' below PREFIX.",
)
@_json_flag
@click.pass_obj
def du_command(settings: _Settings, prefix: str, depth: int) -> None:
    """Count the values and bytes under PREFIX.

    With --depth, a breakdown by child prefix too. Values directly at
    PREFIX's level count in the total but in no child.
    """
    with _store(settings) as store:
        usage = bulk.usage(store, prefix, depth=depth)
    out = _Output(settings)
    if out.json:
        out.document({"prefix": prefix, **usage.as_dict()})
        return
    rows: list[tuple[str, str, str]] = []

    def walk(node: bulk.Usage) -> None:
        for name, child in node.children.items():
            rows.append((human_size(child.bytes), _plural(child.objects, "object"), _shown(name)))
            walk(child)

    walk(usage)
    total = f"{_shown(prefix)} (total)" if prefix else "(total)"
    rows.append((human_size(usage.bytes), _plural(usage.objects, "object"), total))
    out.table(("size", "objects", "prefix"), rows, right=2)


def main() -> None:
    """The console script ``mirrorkv``: run the command line and exit with its status."""
    cli.main(prog_name="mirrorkv")
