"""How the command line shows results: JSON, rich text on a terminal, plain text when piped."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

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

from ..meta import Meta
from ..urls import parse_url

__all__ = [
    "Output",
    "Settings",
    "copy_progress",
    "human_size",
    "meta_json",
    "plural",
    "shown",
    "shown_url",
]


@dataclass
class Settings:
    """The global options, shared by every command through click's context object."""

    url: str | None = None
    json: bool = False


class Output:
    """Writes results as JSON, as rich text on a terminal, or as plain text when piped."""

    def __init__(self, settings: Settings) -> None:
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

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[str]],
        *,
        right: int = 0,
        header: bool = True,
        total: bool = False,
    ) -> None:
        """A table: ruled on a terminal, space-aligned columns without a header when piped.

        The first ``right`` columns are right-aligned (numbers); with
        ``total`` the last row is set apart as a total.
        """
        if self.rich:
            table = Table(box=box.SIMPLE_HEAD, header_style="bold", show_header=header)
            for index, name in enumerate(headers):
                table.add_column(name, justify="right" if index < right else "left")
            for number, row in enumerate(rows, 1):
                last = total and number == len(rows)
                table.add_row(*(Text(cell) for cell in row), style="bold" if last else None)
                if total and number == len(rows) - 1:
                    table.add_section()
            self.console.print(table)
            return
        widths = [max((len(row[i]) for row in rows), default=0) for i in range(len(headers))]
        for row in rows:
            cells = [
                cell.rjust(width) if index < right else cell.ljust(width)
                for index, (cell, width) in enumerate(zip(row[:-1], widths, strict=False))
            ]
            click.echo("  ".join([*cells, row[-1]]))


def shown(key: str) -> str:
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


def plural(count: int, noun: str) -> str:
    """``1 object``, ``2 objects``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def meta_json(meta: Meta) -> dict[str, Any]:
    """A :class:`Meta` as a JSON-ready dict, ``modified`` as ISO 8601."""
    fields = meta.as_dict()
    fields["modified"] = meta.modified.isoformat()
    return fields


def shown_url(url: str) -> str:
    """A store URL safe to print: no password, no query string (options may hold secrets)."""
    shown = url.split("?", 1)[0]
    if parse_url(url).password is None:
        return shown
    # Rebuilt from the raw text: StoreURL.redacted() misses a percent-encoded
    # password and turns "sqlite:rel.db" into "sqlite://rel.db".
    netloc = urlsplit(url).netloc
    userinfo, _, host = netloc.rpartition("@")
    return shown.replace(netloc, f"{userinfo.partition(':')[0]}:***@{host}", 1)


@contextmanager
def copy_progress(out: Output) -> Iterator[Callable[[Meta], None] | None]:
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
