"""The mirrorkv command line, driven through click's runner and as the installed script."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

import mirrorkv
from mirrorkv import MemoryStore, Store
from mirrorkv.cli import cli
from mirrorkv.cli._output import human_size
from mirrorkv.stores.sqlite import SQLiteStore

DOCS = Path(__file__).parent.parent / "docs" / "cli.md"
SCRIPT = Path(sys.executable).parent / "mirrorkv"
BINARY = bytes(range(256)) * 64 + b"\r\n\x00\n"


@pytest.fixture(autouse=True)
def _no_inherited_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIRRORKV_URL", raising=False)
    monkeypatch.delenv("MIRRORKV_DEBUG", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Schemes registered during the test are forgotten after it."""
    import mirrorkv.urls

    monkeypatch.setattr(mirrorkv.urls, "_registry", dict(mirrorkv.urls._registry))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def url(db: Path) -> str:
    return f"sqlite://{db}"


@pytest.fixture
def filled(db: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(db) as store:
        store.put("photos/2025/a.jpg", b"a" * 10, content_type="image/jpeg", metadata={"by": "ann"})
        store.put("photos/2025/b.jpg", b"b" * 20)
        store.put("photos/2026/c.jpg", b"c" * 3000)
        store.put("photos/index.html", b"<html>", content_type="text/html")
        store.put("readme", b"hello")
        yield store


def run(*args: str, input: Any = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, env=env)


def ok(*args: str, input: Any = None, env: dict[str, str] | None = None) -> Result:
    result = run(*args, input=input, env=env)
    assert result.exit_code == 0, (result.exit_code, result.stderr, result.exception)
    return result


def fails(code: int, *args: str, input: Any = None, env: dict[str, str] | None = None) -> str:
    """Run a command that must fail with ``code``; return its one-line error message."""
    result = run(*args, input=input, env=env)
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mirrorkv: error: ")
    return lines[0].removeprefix("mirrorkv: error: ")


# -- help, version ---------------------------------------------------------


def test_help_and_version() -> None:
    for flag in ("-h", "--help"):
        result = ok(flag)
        assert "Usage: mirrorkv" in result.stdout
        for name in cli.commands:
            assert name in result.stdout
    assert ok("ls", "-h").stdout.startswith("Usage: mirrorkv ls")
    assert ok("--version").stdout == f"mirrorkv {mirrorkv.__version__}\n"


def test_no_command_shows_usage_with_status_2() -> None:
    result = run()
    assert result.exit_code == 2
    assert "Usage: mirrorkv" in result.stderr


# -- put / get -------------------------------------------------------------


def test_binary_round_trip_through_stdin_and_stdout(url: str) -> None:
    ok("--url", url, "put", "bin/blob", input=BINARY)
    ok("--url", url, "put", "bin/dash", "-", input=BINARY)
    assert ok("--url", url, "get", "bin/blob").stdout_bytes == BINARY
    assert ok("--url", url, "get", "bin/dash", "-o", "-").stdout_bytes == BINARY


def test_url_defaults_to_the_environment(url: str) -> None:
    ok("put", "k", input=b"from env", env={"MIRRORKV_URL": url})
    assert ok("get", "k", env={"MIRRORKV_URL": url}).stdout_bytes == b"from env"


def test_put_from_a_file_with_type_and_metadata(url: str, db: Path, tmp_path: Path) -> None:
    source = tmp_path / "cat.bin"
    source.write_bytes(BINARY)
    result = ok("--url", url, "put", "pics/cat.jpg", str(source), "-m", "owner=ann", "-m", "x=a=b")
    assert result.stdout.startswith("pics/cat.jpg  16.0 KiB  etag ")
    with SQLiteStore(db) as store:
        meta = store.head("pics/cat.jpg")
        assert store.get("pics/cat.jpg") == BINARY
    assert meta.content_type == "image/jpeg"  # guessed from the key
    assert dict(meta.metadata) == {"owner": "ann", "x": "a=b"}
    assert meta.etag in result.stdout


def test_put_json_and_explicit_content_type(url: str) -> None:
    result = ok("--url", url, "--json", "put", "data", "--content-type", "text/csv", input=b"a,b\n")
    record = json.loads(result.stdout)
    assert record["key"] == "data"
    assert record["size"] == 4
    assert record["content_type"] == "text/csv"
    assert record["metadata"] == {}
    assert re.fullmatch(r"[0-9a-f]{32}", record["etag"])
    assert record["modified"].endswith("+00:00")


def test_get_to_a_file(url: str, filled: Store, tmp_path: Path) -> None:
    target = tmp_path / "out.html"
    result = ok("--url", url, "get", "photos/index.html", "-o", str(target))
    assert target.read_bytes() == b"<html>"
    assert result.stdout == f"photos/index.html -> {target} (6 B)\n"
    result = ok("--url", url, "get", "readme", "-o", str(target), "--json")
    assert json.loads(result.stdout) == {"key": "readme", "size": 5, "file": str(target)}
    assert target.read_bytes() == b"hello"


# -- ls ----------------------------------------------------------------------


def test_ls_one_level(url: str, filled: Store) -> None:
    assert ok("--url", url, "ls").stdout == "photos/\nreadme\n"
    assert ok("--url", url, "ls", "photos/").stdout.splitlines() == [
        "photos/2025/",
        "photos/2026/",
        "photos/index.html",
    ]
    assert ok("--url", url, "ls", "nothing/").stdout == ""


def test_ls_recursive(url: str, filled: Store) -> None:
    assert ok("--url", url, "ls", "-r", "photos/2025/").stdout.splitlines() == [
        "photos/2025/a.jpg",
        "photos/2025/b.jpg",
    ]
    assert len(ok("--url", url, "ls", "-r").stdout.splitlines()) == 5


def test_ls_long(url: str, filled: Store) -> None:
    lines = ok("--url", url, "ls", "-l", "photos/").stdout.splitlines()
    assert lines[0].split() == ["PRE", "photos/2025/"]
    fields = lines[2].split()
    assert fields[0:2] == ["6", "B"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", fields[2])
    assert fields[4:] == ["text/html", "photos/index.html"]
    recursive = ok("--url", url, "ls", "-lr", "photos/2026/").stdout
    assert recursive.split()[:2] == ["2.9", "KiB"]
    assert recursive.rstrip().endswith("photos/2026/c.jpg")


def test_ls_json(url: str, filled: Store) -> None:
    entries = json.loads(ok("--url", url, "--json", "ls", "photos/").stdout)
    assert [(entry["type"], entry["key"]) for entry in entries] == [
        ("prefix", "photos/2025/"),
        ("prefix", "photos/2026/"),
        ("object", "photos/index.html"),
    ]
    assert entries[2]["size"] == 6
    assert entries[2]["content_type"] == "text/html"
    # --json is accepted after the command name too; -r lists objects only.
    entries = json.loads(ok("--url", url, "ls", "-r", "--json").stdout)
    assert [entry["key"] for entry in entries] == list(filled)
    assert entries[0]["metadata"] == {"by": "ann"}
    assert json.loads(ok("--url", url, "ls", "--json", "nothing/").stdout) == []


def test_ls_escapes_control_characters_for_people_not_for_json(url: str, db: Path) -> None:
    with SQLiteStore(db) as store:
        store.put("bell\x07\x1b[31mred", b"")
    assert ok("--url", url, "ls").stdout == "bell\\x07\\x1b[31mred\n"
    assert json.loads(ok("--url", url, "ls", "--json").stdout)[0]["key"] == "bell\x07\x1b[31mred"


# -- rm, stat ----------------------------------------------------------------


def test_rm(url: str, filled: Store, db: Path) -> None:
    result = ok("--url", url, "rm", "readme", "photos/2025/a.jpg", "never-existed")
    assert result.stdout == ""
    result = ok("--url", url, "rm", "--json", "photos/2025/b.jpg")
    assert json.loads(result.stdout) == {"deleted": ["photos/2025/b.jpg"]}
    with SQLiteStore(db) as store:
        assert list(store) == ["photos/2026/c.jpg", "photos/index.html"]
    assert "Missing argument" in fails(2, "--url", url, "rm")


def test_stat(url: str, filled: Store) -> None:
    text = ok("--url", url, "stat", "photos/2025/a.jpg").stdout
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in text.splitlines())
    assert rows["key"] == "photos/2025/a.jpg"
    assert rows["size"] == "10 (10 B)"
    assert rows["content type"] == "image/jpeg"
    assert rows["metadata.by"] == "ann"
    assert rows["etag"] == filled.head("photos/2025/a.jpg").etag
    record = json.loads(ok("--url", url, "stat", "--json", "photos/2025/a.jpg").stdout)
    assert record == {
        **filled.head("photos/2025/a.jpg").as_dict(),
        "modified": filled.head("photos/2025/a.jpg").modified.isoformat(),
        "metadata": {"by": "ann"},
    }


# -- cp, du ------------------------------------------------------------------


def test_cp_between_two_stores_with_a_prefix(url: str, filled: Store, tmp_path: Path) -> None:
    target = tmp_path / "copy.db"
    result = ok("cp", url, f"sqlite://{target}", "photos/2025/")
    assert result.stdout == f"copied 2 objects (30 B) from {url} to sqlite://{target}\n"
    with SQLiteStore(target) as copy:
        assert list(copy) == ["photos/2025/a.jpg", "photos/2025/b.jpg"]
        meta = copy.head("photos/2025/a.jpg")
        assert (meta.content_type, dict(meta.metadata)) == ("image/jpeg", {"by": "ann"})
    report = json.loads(ok("--json", "cp", url, f"sqlite://{target}").stdout)
    assert report == {
        "source": url,
        "target": f"sqlite://{target}",
        "prefix": "",
        "objects": 5,
        "bytes": 3041,
        "skipped": 0,
    }


def test_cp_never_prints_secrets(url: str, filled: Store, tmp_path: Path) -> None:
    secret = f"sqlite://user:hunter2@{tmp_path}/x.db?timeout=5"
    result = ok("--json", "cp", url, secret, "readme")
    assert "hunter2" not in result.stdout
    assert json.loads(result.stdout)["target"] == f"sqlite://user:***@{tmp_path}/x.db"
    assert "hunter2" not in ok("cp", url, secret, "readme").stdout
    assert "hunter2" not in fails(2, "cp", url, "nosuch://user:hunter2@host/")
    encoded = f"sqlite://user:hun%40ter2@{tmp_path}/z.db"
    result = ok("--json", "cp", url, encoded, "readme")
    assert json.loads(result.stdout)["target"] == f"sqlite://user:***@{tmp_path}/z.db"


def test_du(url: str, filled: Store) -> None:
    assert ok("--url", url, "du").stdout.split() == ["3.0", "KiB", "5", "objects", "(total)"]
    lines = ok("--url", url, "du", "photos/", "--depth", "1").stdout.splitlines()
    assert [line.split() for line in lines] == [
        ["30", "B", "2", "objects", "photos/2025/"],
        ["2.9", "KiB", "1", "object", "photos/2026/"],
        ["3.0", "KiB", "4", "objects", "photos/", "(total)"],
    ]
    record = json.loads(ok("--url", url, "--json", "du", "-d", "1").stdout)
    assert record == {
        "prefix": "",
        "objects": 5,
        "bytes": 3041,
        "children": {"photos/": {"objects": 4, "bytes": 3036, "children": {}}},
    }


def test_human_size() -> None:
    assert human_size(0) == "0 B"
    assert human_size(1023) == "1023 B"
    assert human_size(1536) == "1.5 KiB"
    assert human_size(3 * 1024**3) == "3.0 GiB"
    assert human_size(5 * 1024**5) == "5120.0 TiB"


# -- a terminal: rich output ---------------------------------------------------


def test_terminal_output_is_rich(url: str, filled: Store, tmp_path: Path) -> None:
    tty = {"FORCE_COLOR": "1", "COLUMNS": "120"}
    listing = ok("--url", url, "ls", "-l", "photos/", env=tty).stdout
    assert "\x1b[" in listing
    assert "photos/2025/" in listing
    table = ok("--url", url, "stat", "readme", env=tty).stdout
    assert re.search(r"^  content type +application/octet-stream", table, re.MULTILINE)
    usage = ok("--url", url, "du", "-d", "2", env=tty).stdout
    assert "─" in usage
    assert "photos/2026/" in usage
    # The progress bar goes to stderr; the summary to stdout.
    copied = ok("cp", url, f"sqlite://{tmp_path}/tty.db", env=tty)
    assert "5 objects (3.0 KiB)" in copied.stdout
    # JSON stays JSON on a terminal.
    assert json.loads(ok("--url", url, "--json", "du", env=tty).stdout)["objects"] == 5


# -- errors: status and one line on stderr -------------------------------------


def test_missing_key_exits_1(url: str) -> None:
    assert fails(1, "--url", url, "get", "nope") == "key not found: 'nope'"
    assert fails(1, "--url", url, "stat", "nope") == "key not found: 'nope'"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("get", ""), "must not be empty"),
        (("put", "a\x00b"), "NUL"),
        (("frobnicate",), "No such command"),
        (("get",), "Missing argument 'KEY'"),
        (("ls", "--bogus"), "No such option"),
        (("du", "--depth", "-1"), "--depth"),
        (("put", "k", "-m", "novalue"), "NAME=VALUE"),
        (("put", "k", "/no/such/file"), "does not exist"),
    ],
)
def test_bad_usage_exits_2(url: str, args: tuple[str, ...], needle: str) -> None:
    assert needle in fails(2, "--url", url, *args, input=b"")


def test_bad_url_exits_2() -> None:
    assert "unknown store scheme" in fails(2, "--url", "nosuch://x", "ls")
    assert "no scheme" in fails(2, "--url", "just-a-path", "ls")
    assert "unknown option" in fails(2, "--url", "memory://?colour=blue", "ls")


@pytest.mark.usefixtures("scratch_registry")
def test_other_store_errors_exit_1() -> None:
    mirrorkv.register("clitest-missing", "mirrorkv_test_no_such_module:Store")
    assert "missing" in fails(1, "--url", "clitest-missing://", "ls")


def test_local_file_errors_exit_1(url: str, filled: Store, tmp_path: Path) -> None:
    message = fails(1, "--url", url, "get", "readme", "-o", str(tmp_path / "no" / "dir" / "f"))
    assert "No such file or directory" in message


class _Buggy(MemoryStore):
    """A backend with a bug, to see how the command line reports the unexpected."""

    @classmethod
    def from_url(cls, url: Any, **options: Any) -> MemoryStore:
        raise RuntimeError("a bug\nover two lines")


@pytest.mark.usefixtures("scratch_registry")
def test_unexpected_errors_are_one_line_unless_debugging() -> None:
    mirrorkv.register("clitest-buggy", _Buggy)
    message = fails(1, "--url", "clitest-buggy://", "ls")
    assert message.startswith("unexpected RuntimeError: a bug over two lines")
    result = run("--url", "clitest-buggy://", "ls", env={"MIRRORKV_DEBUG": "1"})
    assert isinstance(result.exception, RuntimeError)


class _InterruptedStdin(io.BytesIO):
    """Standard input at which the user presses Ctrl-C."""

    def read(self, size: int | None = -1) -> bytes:
        if size == 0:  # the test runner probes whether the stream is binary
            return b""
        raise KeyboardInterrupt


def test_interrupt_exits_130(url: str) -> None:
    result = run("--url", url, "put", "k", input=_InterruptedStdin())
    assert result.exit_code == 130
    assert result.stderr.strip() == "mirrorkv: error: interrupted"


def test_every_command_has_help_and_is_documented() -> None:
    # docs/cli.md and the pages it links to for command groups (docs/cli-mirror.md).
    docs = "\n".join(path.read_text(encoding="utf-8") for path in DOCS.parent.glob("cli*.md"))
    assert cli.help
    for name, command in cli.commands.items():
        assert command.help, f"{name} has no help text"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts} has no help text"
        assert re.search(rf"^## `mirrorkv {name}\b", docs, re.MULTILINE), f"{name} not in docs"
        assert re.search(rf"^\$ mirrorkv .*\b{name}\b", docs, re.MULTILINE), f"no {name} example"


# -- the installed script --------------------------------------------------------


def _script(*args: str, input: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    if not SCRIPT.exists():
        pytest.skip(f"the console script is not installed at {SCRIPT}")
    env = {k: v for k, v in os.environ.items() if k not in ("MIRRORKV_URL", "FORCE_COLOR")}
    return subprocess.run([str(SCRIPT), *args], input=input, capture_output=True, env=env)


def test_installed_script_round_trips_binary_and_reports_errors(url: str) -> None:
    stored = _script("--url", url, "put", "blob", "-", input=BINARY)
    assert stored.returncode == 0, stored.stderr
    fetched = _script("--url", url, "get", "blob")
    assert (fetched.returncode, fetched.stdout, fetched.stderr) == (0, BINARY, b"")
    missing = _script("--url", url, "get", "nope")
    assert missing.returncode == 1
    assert missing.stderr == b"mirrorkv: error: key not found: 'nope'\n"
    usage = _script("--url", url, "get", "")
    assert usage.returncode == 2
    assert usage.stderr.count(b"\n") == 1


def test_installed_script_stops_quietly_when_the_reader_goes_away(filled: Store, url: str) -> None:
    if not SCRIPT.exists():
        pytest.skip(f"the console script is not installed at {SCRIPT}")
    filled.put("big", b"x" * (4 << 20))  # far more than a pipe buffers
    process = subprocess.Popen(
        [str(SCRIPT), "--url", url, "get", "big"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.read(10) == b"x" * 10
    process.stdout.close()  # like `| head -c 10`
    error = process.stderr.read()
    process.stderr.close()
    assert process.wait() == 1
    assert error == b""


def test_installed_script_copies_sqlite_to_files_and_back(
    filled: Store, url: str, tmp_path: Path
) -> None:
    files = f"file://{tmp_path / 'blobs'}"
    copied = _script("--json", "cp", url, files, "photos/")
    assert copied.returncode == 0, copied.stderr
    assert json.loads(copied.stdout)["objects"] == 4
    listing = _script("--url", files, "ls", "-r", "--json")
    assert [entry["key"] for entry in json.loads(listing.stdout)] == [
        "photos/2025/a.jpg",
        "photos/2025/b.jpg",
        "photos/2026/c.jpg",
        "photos/index.html",
    ]
    stat = json.loads(_script("--url", files, "stat", "photos/2025/a.jpg", "--json").stdout)
    assert (stat["content_type"], stat["metadata"]) == ("image/jpeg", {"by": "ann"})
    usage = json.loads(_script("--url", files, "--json", "du", "photos/", "-d", "1").stdout)
    assert usage["children"]["photos/2026/"] == {"objects": 1, "bytes": 3000, "children": {}}
