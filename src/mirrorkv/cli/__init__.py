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
import mimetypes
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any, TypeVar

import click

from .. import __version__, bulk
from .. import open as open_store
from ..meta import Details, Meta
from ..store import CHUNK_SIZE, Store
from ._errors import Group
from ._mirror_output import usage_bar
from ._mirrored import Filters, find, index_option, known_meta_json, opened
from ._mirrored import parse_size as _parse_size
from ._mirrored import parse_time as _parse_time
from ._output import (
    Output,
    Settings,
    copy_progress,
    human_size,
    meta_json,
    plural,
    shown,
    shown_url,
)
from .mirror import mirror_group

__all__ = ["cli", "main"]


_F = TypeVar("_F", bound=Callable[..., Any])


@contextmanager
def _store(settings: Settings) -> Iterator[Store]:
    with open_store(settings.url) as store:
        yield store


def _json_flag(command: _F) -> _F:
    """``--json`` after the command name too (``mirrorkv ls --json``)."""

    def remember(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            ctx.ensure_object(Settings).json = True

    return click.option(
        "--json",
        is_flag=True,
        expose_value=False,
        callback=remember,
        help="Print machine-readable JSON.",
    )(command)


# -- the commands -----------------------------------------------------------


@click.group(
    "mirrorkv",
    cls=Group,
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
    ctx.obj = Settings(url, as_json)


@cli.command("ls")
@click.argument("prefix", default="")
@click.option("-l", "long", is_flag=True, help="Long format: size, modified (UTC), type, key.")
@click.option("-r", "recursive", is_flag=True, help="Every key under PREFIX, at any depth.")
@index_option
@_json_flag
@click.pass_obj
def ls_command(
    settings: Settings, prefix: str, long: bool, recursive: bool, index_url: str | None
) -> None:
    """List the keys under PREFIX.

    Without -r, one level as S3 lists it: the common prefixes ending in '/'
    first, then the values at this level. PREFIX matches as a string, so
    'photos' also shows 'photos.txt'; use 'photos/' for the level below.
    """
    out = Output(settings)
    with opened(settings.url, index_url) as store:
        local = index_url is not None
        if recursive:
            _print_listing(out, (), store.list(prefix), long, local)
        else:
            listing = store.ls(prefix, "/")
            _print_listing(out, listing.prefixes, listing.objects, long, local)


def _print_listing(
    out: Output,
    prefixes: Iterable[str],
    objects: Iterable[Meta],
    long: bool,
    local: bool = False,
) -> None:
    """Prefixes, then objects; ``local``: show only what the records hold (no fetching)."""
    as_json = known_meta_json if local else meta_json
    if out.json:
        out.array(
            itertools.chain(
                ({"type": "prefix", "key": prefix} for prefix in prefixes),
                ({"type": "object", **as_json(meta)} for meta in objects),
            )
        )
        return
    for prefix in prefixes:
        lead = f"{'PRE':>10}  {'':19}  {'':24}  " if long else ""
        out.line((lead, "dim"), (shown(prefix), "bold blue"))
    for meta in objects:
        if not long:
            out.line((shown(meta.key), ""))
            continue
        out.line(
            (f"{human_size(meta.size):>10}  ", "cyan"),
            (f"{meta.modified:%Y-%m-%d %H:%M:%S}  ", "green"),
            (f"{_content_type(meta, local):<24}  ", "magenta"),
            (shown(meta.key), ""),
        )


def _content_type(meta: Meta, local: bool) -> str:
    """The content type, or ``-`` for a local answer whose record has not fetched it."""
    if local and meta[4].__class__ is Details:
        return "-"
    return meta.content_type


@cli.command("find")
@click.argument("prefix", default="")
@click.option(
    "--glob", metavar="G", help="Keys matching this glob whole ('*' within a segment, '**' across)."
)
@click.option(
    "--regex", metavar="R", help="Keys where this Python regex matches (anywhere; anchor with ^)."
)
@click.option("--min-size", metavar="N", help="At least this size (bytes, or 10k, 1.5M, 2G).")
@click.option("--max-size", metavar="N", help="At most this size (bytes, or 10k, 1.5M, 2G).")
@click.option(
    "--newer",
    metavar="TIME",
    help="Modified after TIME (ISO 8601, UTC unless given, or an age: 30m, 2h, 7d).",
)
@click.option("--older", metavar="TIME", help="Modified before TIME (same forms as --newer).")
@click.option("--type", "content_type", metavar="CT", help="With exactly this content type.")
@click.option("-l", "long", is_flag=True, help="Long format: size, modified (UTC), type, key.")
@index_option
@_json_flag
@click.pass_obj
def find_command(
    settings: Settings,
    prefix: str,
    glob: str | None,
    regex: str | None,
    min_size: str | None,
    max_size: str | None,
    newer: str | None,
    older: str | None,
    content_type: str | None,
    long: bool,
    index_url: str | None,
) -> None:
    """List the keys under PREFIX that pass every filter given, in key order.

    With --index the index answers (no request to the store); otherwise the
    store is listed and filtered, with the same rules.
    """
    filters = Filters(
        glob=glob,
        regex=regex,
        min_size=None if min_size is None else _parse_size(min_size),
        max_size=None if max_size is None else _parse_size(max_size),
        newer=None if newer is None else _parse_time(newer),
        older=None if older is None else _parse_time(older),
        content_type=content_type,
    )
    out = Output(settings)
    with opened(settings.url, index_url) as store:
        _print_listing(out, (), find(store, prefix, filters), long, index_url is not None)


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
def get_command(settings: Settings, key: str, output: str | None) -> None:
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
    out = Output(settings)
    if out.json:
        out.document({"key": key, "size": size, "file": output})
    else:
        out.line((shown(key), "bold"), (f" -> {output} ({human_size(size)})", ""))


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
    help="Content type to record (default: guessed from KEY's name, else FILE's).",
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
    settings: Settings,
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
        guessed = mimetypes.guess_type(key, strict=False)[0]
        if guessed is None and not from_stdin:
            guessed = mimetypes.guess_type(str(file), strict=False)[0]
        content_type = guessed
    source: str | IO[bytes] = sys.stdin.buffer if from_stdin else str(file)
    with _store(settings) as store:
        meta = store.put_file(key, source, content_type=content_type, metadata=metadata)
    out = Output(settings)
    if out.json:
        out.document(meta_json(meta))
    else:
        out.line(
            (shown(meta.key), "bold"),
            (f"  {human_size(meta.size)}", "cyan"),
            (f"  etag {meta.etag}", "dim"),
        )


@cli.command("rm")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@_json_flag
@click.pass_obj
def rm_command(settings: Settings, keys: tuple[str, ...]) -> None:
    """Delete each KEY. Keys that do not exist are not an error (like rm -f).

    Prints nothing; --json lists the keys now absent.
    """
    with _store(settings) as store:
        store.delete_many(keys)
    out = Output(settings)
    if out.json:
        out.document({"deleted": list(keys)})


@cli.command("stat")
@click.argument("key")
@index_option
@_json_flag
@click.pass_obj
def stat_command(settings: Settings, key: str, index_url: str | None) -> None:
    """Show the metadata of KEY.

    Size, etag, modified (UTC), content type, version and user metadata.
    With --index, what the index holds ('-' for details it has not fetched).
    """
    with opened(settings.url, index_url) as store:
        meta = store.head(key)
        fields = known_meta_json(meta) if index_url is not None else meta_json(meta)
    out = Output(settings)
    if out.json:
        out.document(fields)
        return
    rows = [
        ("key", shown(meta.key)),
        ("size", f"{meta.size} ({human_size(meta.size)})"),
        ("etag", fields["etag"]),
        ("modified", fields["modified"]),
        ("content type", fields["content_type"] or "-"),
        ("version", "-" if fields["version"] is None else fields["version"]),
        *(
            (f"metadata.{name}", shown(value))
            for name, value in sorted((fields["metadata"] or {}).items())
        ),
    ]
    out.table(("field", "value"), rows, header=False)


@cli.command("cp")
@click.argument("source_url", metavar="SRC_URL")
@click.argument("target_url", metavar="DST_URL")
@click.argument("prefix", default="")
@_json_flag
@click.pass_obj
def cp_command(settings: Settings, source_url: str, target_url: str, prefix: str) -> None:
    """Copy the values under PREFIX from one store to another.

    From the store SRC_URL to the store DST_URL, any kind to any kind;
    keys, content types and metadata are kept. Shows a progress bar on a
    terminal and a summary at the end.
    """
    out = Output(settings)
    with (
        open_store(source_url) as source,
        open_store(target_url) as target,
        copy_progress(out) as progress,
    ):
        report = bulk.copy_all(source, target, prefix, progress=progress)
    shown_source, shown_target = shown_url(source_url), shown_url(target_url)
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
        (f"{plural(report.objects, 'object')} ({human_size(report.bytes)})", "bold"),
        (f" from {shown_source} to {shown_target}{skipped}", ""),
    )


@cli.command("du")
@click.argument("prefix", default="")
@click.option(
    "-d",
    "--depth",
    type=click.IntRange(min=0),
    default=None,
    help="Break the total down this many levels of '/' below PREFIX (default: 0; 1 with --index).",
)
@index_option
@_json_flag
@click.pass_obj
def du_command(settings: Settings, prefix: str, depth: int | None, index_url: str | None) -> None:
    """Count the values and bytes under PREFIX.

    With --depth, a breakdown by child prefix too, with bars on a terminal.
    Values directly at PREFIX's level count in the total but in no child.
    With --index, the index's running totals answer without listing.
    """
    if depth is None:
        depth = 0 if index_url is None else 1
    with opened(settings.url, index_url) as store:
        usage = bulk.usage(store, prefix, depth=depth)  # a mirror answers from its index
    out = Output(settings)
    if out.json:
        out.document({"prefix": prefix, **usage.as_dict()})
        return
    rows: list[tuple[str, ...]] = []
    bars = out.rich

    def walk(node: bulk.Usage) -> None:
        largest = max((child.bytes for child in node.children.values()), default=0)
        for name, child in node.children.items():
            size, count = human_size(child.bytes), plural(child.objects, "object")
            bar = (usage_bar(child.bytes, largest),) if bars else ()
            rows.append((size, count, *bar, shown(name)))
            walk(child)

    walk(usage)
    total = f"{shown(prefix)} (total)" if prefix else "(total)"
    bar = ("",) if bars and rows else ()
    rows.append((human_size(usage.bytes), plural(usage.objects, "object"), *bar, total))
    headers = ("size", "objects", "usage", "prefix") if bar else ("size", "objects", "prefix")
    out.table(headers, rows, right=2, total=True)


cli.add_command(mirror_group)


def main() -> None:
    """The console script ``mirrorkv``: run the command line and exit with its status."""
    cli.main(prog_name="mirrorkv")
