"""The mirror's command line: mirror sync/watch, find, and --index on ls, du and stat."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from click.testing import CliRunner, Result

from mirrorkv.cli import cli
from mirrorkv.cli._mirror_output import usage_bar
from mirrorkv.cli._mirrored import parse_size, parse_time
from mirrorkv.mirror import SQLiteIndex
from mirrorkv.stores.sqlite import SQLiteStore
from services import unique_name
from services.s3 import REGION, admin_client, new_bucket

SCRIPT = Path(sys.executable).parent / "mirrorkv"
TTY = {"FORCE_COLOR": "1", "COLUMNS": "120"}


@pytest.fixture(autouse=True)
def _no_inherited_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MIRRORKV_URL", "MIRRORKV_DEBUG", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)


def run(*args: str, env: dict[str, str] | None = None, input: Any = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, input=input)


def ok(*args: str, env: dict[str, str] | None = None, input: Any = None) -> Result:
    result = run(*args, env=env, input=input)
    assert result.exit_code == 0, (result.exit_code, result.stderr, result.exception)
    return result


@pytest.fixture
def store_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "store.db"
    with SQLiteStore(path) as store:
        store.put("photos/2025/a.jpg", b"a" * 10, content_type="image/jpeg")
        store.put("photos/2025/b.png", b"b" * 20, content_type="image/png")
        store.put("photos/2026/c.jpg", b"c" * 3000, content_type="image/jpeg")
        store.put("docs/readme.md", b"hello", content_type="text/markdown")
        store.put("top", b"t")
    yield path


@pytest.fixture
def url(store_path: Path) -> str:
    return f"sqlite://{store_path}"


@pytest.fixture
def index(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path}/index.db"


@pytest.fixture
def synced(url: str, index: str) -> str:
    ok("mirror", "sync", url, "--index", index)
    return index


def keys_of(result: Result) -> list[str]:
    return result.stdout.split()


def test_sync_reports_what_changed(url: str, index: str, store_path: Path) -> None:
    first = ok("mirror", "sync", url, "--index", index).stdout
    assert first.startswith(f"synced {url}: 5 added, 0 changed, 0 removed (5 keys checked)")
    with SQLiteStore(store_path) as store:
        store.delete("top")
        store.put("docs/readme.md", b"changed")
    report = json.loads(ok("mirror", "sync", url, "--index", index, "--json").stdout)
    assert {k: report[k] for k in ("added", "changed", "removed", "checked", "requests")} == {
        "added": 0,
        "changed": 1,
        "removed": 1,
        "checked": 4,
        "requests": 1,
    }
    assert report["url"] == url and report["index"] == index


def test_sync_of_a_prefix_keeps_or_forgets_what_went(
    url: str, index: str, store_path: Path
) -> None:
    ok("mirror", "sync", url, "--index", index)
    with SQLiteStore(store_path) as store:
        store.delete("photos/2025/a.jpg")
    kept = json.loads(
        ok("--json", "mirror", "sync", url, "photos/", "--index", index, "--no-delete").stdout
    )
    assert (kept["prefix"], kept["removed"], kept["checked"]) == ("photos/", 0, 2)
    assert "photos/2025/a.jpg" in keys_of(ok("--url", url, "ls", "-r", "--index", index))
    gone = json.loads(ok("--json", "mirror", "sync", url, "photos/", "--index", index).stdout)
    assert gone["removed"] == 1
    assert "photos/2025/a.jpg" not in keys_of(ok("--url", url, "ls", "-r", "--index", index))


def test_sync_of_listed_keys(url: str, index: str, store_path: Path, tmp_path: Path) -> None:
    with SQLiteStore(store_path) as store:
        store.put("new", b"n")
    listed = tmp_path / "keys.txt"
    listed.write_text("new\ntop\nnever-there\n\n", encoding="utf-8")
    report = json.loads(
        ok("mirror", "sync", url, "--index", index, "--keys-from", str(listed), "--json").stdout
    )
    assert (report["added"], report["checked"], report["requests"]) == (2, 2, 3)
    from_stdin = ok("mirror", "sync", url, "--index", index, "--keys-from", "-", input="new\n")
    assert "0 added" in from_stdin.stdout
    assert keys_of(ok("--url", url, "ls", "-r", "--index", index)) == ["new", "top"]


def test_index_answers_without_asking_the_store(url: str, synced: str, store_path: Path) -> None:
    with SQLiteStore(store_path) as store:
        store.put("photos/behind-its-back", b"x")
    assert "photos/behind-its-back" in keys_of(ok("--url", url, "ls", "photos/"))
    assert keys_of(ok("--url", url, "ls", "photos/", "--index", synced)) == [
        "photos/2025/",
        "photos/2026/",
    ]
    missing = run("--url", url, "stat", "photos/behind-its-back", "--index", synced)
    assert missing.exit_code == 1
    record = json.loads(ok("--url", url, "--json", "stat", "top", "--index", synced).stdout)
    assert (record["key"], record["size"], record["content_type"]) == (
        "top",
        1,
        "application/octet-stream",
    )


def test_du_from_the_index(url: str, synced: str) -> None:
    lines = ok("--url", url, "du", "--index", synced).stdout.splitlines()
    assert [line.split() for line in lines] == [
        ["5", "B", "1", "object", "docs/"],
        ["3.0", "KiB", "3", "objects", "photos/"],
        ["3.0", "KiB", "5", "objects", "(total)"],
    ]
    assert (
        ok("--url", url, "du", "--index", synced).stdout == ok("--url", url, "du", "-d", "1").stdout
    )
    deep = ok("--url", url, "--json", "du", "photos", "-d", "2", "--index", synced).stdout
    assert json.loads(deep) == json.loads(
        ok("--url", url, "--json", "du", "photos", "-d", "2").stdout
    )
    total = ok("--url", url, "du", "-d", "0", "--index", synced).stdout
    assert total.split() == ["3.0", "KiB", "5", "objects", "(total)"]


def test_du_bars_on_a_terminal(url: str, synced: str) -> None:
    shown = ok("--url", url, "du", "--index", synced, env=TTY).stdout
    assert "█" * 20 in shown  # the largest child fills its bar
    assert "photos/" in shown and "docs/" in shown
    plain = ok("--url", url, "du", "-d", "1", env=TTY).stdout
    assert "█" * 20 in plain
    assert usage_bar(0, 10) == " " * 20
    assert usage_bar(1, 10, 8).rstrip() == "▊"
    assert usage_bar(5, 10, 4) == "██  "


FILTERS = [
    ("--glob", "**.jpg"),
    ("--glob", "photos/*/?.png"),
    ("--regex", "^photos/2025/"),
    ("--regex", r"\.(md|png)$"),
    ("--min-size", "1k"),
    ("--max-size", "10"),
    ("--type", "image/jpeg"),
    ("--newer", "1h"),
    ("--older", "1h"),
]


@pytest.mark.parametrize(("option", "value"), FILTERS)
def test_find_matches_the_same_with_and_without_the_index(
    url: str, synced: str, option: str, value: str
) -> None:
    plain = keys_of(ok("--url", url, "find", option, value))
    indexed = keys_of(ok("--url", url, "find", option, value, "--index", synced))
    assert plain == indexed


def test_find_results_and_formats(url: str, synced: str) -> None:
    assert keys_of(ok("--url", url, "find", "--glob", "**.jpg")) == [
        "photos/2025/a.jpg",
        "photos/2026/c.jpg",
    ]
    assert keys_of(ok("--url", url, "find", "photos/2025/", "--min-size", "15")) == [
        "photos/2025/b.png"
    ]
    assert keys_of(ok("--url", url, "find", "docs/", "--glob", "photos/**")) == []
    assert keys_of(ok("--url", url, "find", "--older", "1h")) == []
    long = ok("--url", url, "find", "-l", "--type", "text/markdown", "--index", synced).stdout
    assert long.split()[-2:] == ["text/markdown", "docs/readme.md"]
    found = json.loads(
        ok("--url", url, "--json", "find", "--max-size", "5", "--index", synced).stdout
    )
    assert [(item["key"], item["size"]) for item in found] == [("docs/readme.md", 5), ("top", 1)]


@pytest.mark.parametrize(
    "args",
    [("--regex", "("), ("--min-size", "ten"), ("--newer", "yesterday-ish")],
)
def test_find_bad_filters_exit_2(url: str, args: tuple[str, ...]) -> None:
    result = run("--url", url, "find", *args)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("mirrorkv: error: ")


def test_parse_size_and_time() -> None:
    assert [parse_size(text) for text in ("0", "1234", "10k", "1.5M", "2GiB")] == [
        0,
        1234,
        10240,
        1572864,
        2 * 1024**3,
    ]
    now = datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert parse_time("2h", now) == now - timedelta(hours=2)
    assert parse_time("7d", now) == now - timedelta(days=7)
    assert parse_time("2026-01-31T12:00") == now
    assert parse_time("2026-01-31T13:00+01:00") == now


def test_mirror_commands_have_help() -> None:
    for args in (("mirror",), ("mirror", "sync"), ("mirror", "watch"), ("find",)):
        assert "Usage:" in ok(*args, "--help").stdout
    assert run("mirror", "sync", "memory://", "--index", "x").exit_code == 2  # no bucket name


# -- against S3 (moto) -------------------------------------------------------------------


def s3_url(endpoint: str, bucket: str, prefix: str = "") -> str:
    return f"s3://{bucket}/{prefix}?endpoint_url={quote(endpoint, safe='')}&region={REGION}"


def test_s3_sync_with_progress_then_local_answers(
    request: pytest.FixtureRequest, index: str
) -> None:
    endpoint, bucket = new_bucket(request)
    client = admin_client(endpoint)
    for number in range(12):
        client.put_object(Bucket=bucket, Key=f"logs/{number:02}.txt", Body=b"x" * number)
    client.put_object(Bucket=bucket, Key="top.json", Body=b"{}", ContentType="application/json")
    url = s3_url(endpoint, bucket)

    synced = ok("mirror", "sync", url, "--index", index, env=TTY)
    assert "requests" in synced.stderr  # the progress bar, on stderr
    assert f"synced s3://{bucket}/: 13 added" in re.sub(r"\x1b\[[0-9;]*m", "", synced.stdout)
    assert endpoint not in synced.stdout  # the query string is never shown

    client.delete_object(Bucket=bucket, Key="top.json")  # the index does not know yet
    assert "top.json" in keys_of(ok("--url", url, "ls", "--index", index))
    record = json.loads(ok("--url", url, "--json", "stat", "top.json", "--index", index).stdout)
    assert (record["size"], record["content_type"], record["metadata"]) == (2, None, None)
    table = ok("--url", url, "stat", "top.json", "--index", index).stdout
    assert "content type  -" in table
    long = ok("--url", url, "ls", "-l", "--index", index).stdout
    assert "top.json" in long and "application/json" not in long
    usage = ok("--url", url, "du", "--index", index).stdout.splitlines()
    assert usage[0].split() == ["66", "B", "12", "objects", "logs/"]
    prefixed = ok("--json", "mirror", "sync", s3_url(endpoint, bucket, "logs/"), "--index", index)
    assert json.loads(prefixed.stdout)["checked"] == 12
    client.close()


@pytest.fixture
def watched(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str, Any]]:
    """(endpoint, bucket, queue URL, s3 client): a bucket notifying a new queue."""
    import boto3

    endpoint, bucket = new_bucket(request)
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    queue_url = sqs.create_queue(QueueName=unique_name("mkv-q-"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    client = admin_client(endpoint)
    client.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn["Attributes"]["QueueArn"],
                    "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                }
            ]
        },
    )
    yield endpoint, bucket, queue_url, client
    client.close()
    sqs.delete_queue(QueueUrl=queue_url)
    sqs.close()


def test_watch_until_empty(watched: tuple[str, str, str, Any], tmp_path: Path) -> None:
    _, bucket, queue_url, client = watched
    for number in range(4):
        client.put_object(Bucket=bucket, Key=f"k{number}", Body=b"v" * number)
    client.delete_object(Bucket=bucket, Key="k0")
    index = f"sqlite://{tmp_path}/watch.db"
    args = ("mirror", "watch", "--sqs", queue_url, "--index", index, "--until-empty", "--wait", "1")
    shown = ok(*args, "--bucket", bucket).stdout.splitlines()
    assert "messages:" in shown[0]
    assert shown[-1] == "drained: 6 messages applied (4 recorded, 1 removed)"
    with SQLiteIndex(tmp_path / "watch.db") as opened:
        assert [(meta.key, meta.size) for meta in opened.list(bucket)] == [
            ("k1", 1),
            ("k2", 2),
            ("k3", 3),
        ]
    client.put_object(Bucket=bucket, Key="k9", Body=b"9")
    lines = ok("--json", *args).stdout.splitlines()
    assert json.loads(lines[0])["events"]["recorded"] == 1
    assert (
        json.loads(lines[-1])
        == {
            "total": json.loads(lines[-1])["total"],
            "end": "drained",
        }
        and json.loads(lines[-1])["total"]["applied"] == 1
    )


@pytest.mark.parametrize(
    ("signum", "ending"), [(signal.SIGINT, "interrupted: "), (signal.SIGTERM, "stopped: ")]
)
def test_watch_stops_cleanly_on_ctrl_c_or_sigterm(
    watched: tuple[str, str, str, Any], tmp_path: Path, signum: int, ending: str
) -> None:
    if not SCRIPT.exists():
        pytest.skip(f"the console script is not installed at {SCRIPT}")
    _, bucket, queue_url, client = watched
    client.put_object(Bucket=bucket, Key="first", Body=b"1")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("FORCE_COLOR", None)
    index = f"sqlite://{tmp_path}/watch.db"
    watcher = subprocess.Popen(
        [str(SCRIPT), "mirror", "watch", "--sqs", queue_url, "--index", index, "--wait", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert watcher.stdout is not None
        first = watcher.stdout.readline()  # a batch line: the watcher is in its loop
        assert "message" in first, watcher.stderr.read() if watcher.stderr else ""
        watcher.send_signal(signum)
        out, err = watcher.communicate(timeout=20)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, err
    assert out.splitlines()[-1].startswith(ending)
    assert err == ""
