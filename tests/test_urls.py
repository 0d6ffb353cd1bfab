"""Configuration by URL: the registry behind mirrorkv.open."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mirrorkv
from mirrorkv import InvalidURL, MemoryStore, NotSupported, urls
from mirrorkv.urls import (
    StoreURL,
    parse_size,
    parse_url,
    register,
    registered_schemes,
    unregister,
)


def test_memory_url_opens_a_memory_store() -> None:
    assert isinstance(mirrorkv.open("memory://"), MemoryStore)


@pytest.mark.parametrize("url", ["", "no-scheme", "://x", "memory://#frag"])
def test_malformed_urls(url: str) -> None:
    with pytest.raises(InvalidURL):
        mirrorkv.open(url)


def test_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(InvalidURL, match=r"memory://.*sqlite://"):
        mirrorkv.open("nosuch://x")


def test_unknown_option_is_rejected_with_the_accepted_ones() -> None:
    with pytest.raises(InvalidURL, match="colour"):
        mirrorkv.open("memory://?colour=blue")


def test_password_is_redacted() -> None:
    url = parse_url("redis://ann:s3cret@host:6379/0")
    assert url.password == "s3cret"
    assert "s3cret" not in url.redacted()
    assert "s3cret" not in repr(url)
    encoded = parse_url("redis://ann:p%40ss@host/0")
    assert encoded.password == "p@ss"
    assert "p%40ss" not in encoded.redacted() and "p@ss" not in encoded.redacted()
    assert parse_url("sqlite:app.db").redacted() == "sqlite:app.db"


def test_paths_follow_the_file_url_convention() -> None:
    assert parse_url("sqlite:///srv/app.db").local_path() == "/srv/app.db"
    assert parse_url("sqlite:app.db").local_path() == "app.db"
    with pytest.raises(InvalidURL):
        parse_url("sqlite://otherhost/app.db").local_path()


class _Recording(MemoryStore):
    seen: dict[str, Any] = {}  # noqa: RUF012

    @classmethod
    def from_url(cls, url: StoreURL, **options: Any) -> MemoryStore:
        cls.seen = {"url": url, **options}
        return cls()


@pytest.fixture
def recording_scheme() -> Iterator[None]:
    register("recording", _Recording)
    yield
    unregister("recording")


def test_register_and_options(recording_scheme: None) -> None:
    assert "recording" in registered_schemes()
    mirrorkv.open("recording://h/p?a=1", b="2")
    assert _Recording.seen["a"] == "1" and _Recording.seen["b"] == "2"


def test_missing_extra_names_it() -> None:
    register("needsextra", "mirrorkv_no_such_module:Store", extra="s3")
    try:
        with pytest.raises(NotSupported, match=r"mirrorkv\[s3\]"):
            mirrorkv.open("needsextra://bucket")
    finally:
        unregister("needsextra")


#: Each network scheme, the top-level package of its driver, and the extra that installs it.
NETWORK_SCHEMES = [
    ("redis://127.0.0.1:6379/0", "redis", "redis"),
    ("s3://bucket", "boto3", "s3"),
    ("postgresql://127.0.0.1/test", "sqlalchemy", "sql"),
    ("mysql://root@127.0.0.1/test", "sqlalchemy", "sql"),
    ("azure://container", "azure", "azure"),
    ("gs://bucket", "google", "gcs"),
]


def _without_packages(packages: list[str], code: str) -> str:
    """Run ``code`` in a fresh interpreter where ``packages`` cannot be imported."""
    blocked = "".join(f"sys.modules[{name!r}] = None\n" for name in packages)
    result = subprocess.run(
        [sys.executable, "-c", f"import sys\n{blocked}{code}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_mirrorkv_and_its_cli_import_without_any_network_driver() -> None:
    drivers = sorted({driver for _, driver, _ in NETWORK_SCHEMES})
    code = "import mirrorkv, mirrorkv.cli\nmirrorkv.open('memory://')\nprint('ok')"
    assert _without_packages(drivers, code).strip() == "ok"


@pytest.mark.parametrize(("url", "driver", "extra"), NETWORK_SCHEMES)
def test_a_network_url_without_its_driver_names_the_extra(
    url: str, driver: str, extra: str
) -> None:
    code = (
        "import mirrorkv\n"
        f"try:\n    mirrorkv.open({url!r})\n"
        "except mirrorkv.NotSupported as error:\n    print(error)\n"
    )
    assert f"pip install 'mirrorkv[{extra}]'" in _without_packages([driver], code)


def test_default_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIRRORKV_URL", "memory://")
    assert isinstance(mirrorkv.open(), MemoryStore)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512", 512), ("64MiB", 64 << 20), ("1.5GB", 1_500_000_000), ("2k", 2000), (7, 7)],
)
def test_parse_size(text: object, size: int) -> None:
    assert parse_size("cache_bytes", text) == size


def test_parse_size_rejects_garbage() -> None:
    with pytest.raises(InvalidURL):
        parse_size("cache_bytes", "lots")


def test_a_plugin_joins_through_the_entry_point_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real (if tiny) installed distribution: a module and a dist-info folder on sys.path.
    (tmp_path / "mirrorkv_demo_plugin.py").write_text(
        "from mirrorkv import MemoryStore\n\n"
        "class DemoStore(MemoryStore):\n"
        "    @classmethod\n"
        "    def from_url(cls, url, **options):\n"
        "        return cls()\n"
    )
    info = tmp_path / "mirrorkv_demo_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mirrorkv-demo-plugin\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[mirrorkv.stores]\ndemo = mirrorkv_demo_plugin:DemoStore\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(urls, "_registry", dict(urls._registry))
    monkeypatch.setattr(urls, "_entry_points_loaded", False)
    store = mirrorkv.open("demo://anything")
    assert type(store).__name__ == "DemoStore"
    assert "demo" in registered_schemes()
