"""S3 (moto's server) for the tests: the server fixture and the conformance factories.

The endpoint comes from ``MIRRORKV_TEST_S3_ENDPOINT``, else an S3 answering on
127.0.0.1:5000 (moto's standard port; skipped under
``MIRRORKV_TEST_OWN_SERVERS=1``), else moto's HTTP server started here as a
separate process on a free port. Where the endpoint is ours or the local
one, the session runs with dummy credentials in the environment (so spawned
child processes have them too); a user-given endpoint keeps the user's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from mirrorkv.testing import StoreFactory

from . import (
    ServerProcess,
    ServiceUnavailable,
    free_port,
    own_servers_forced,
    port_answers,
    skip_unavailable,
    unique_name,
    wait_until,
)

__all__ = [
    "DUMMY_CREDENTIALS",
    "ENDPOINT_ENV",
    "FACTORIES",
    "REGION",
    "admin_client",
    "answers_s3",
    "dummy_credentials",
    "empty_bucket",
    "moto_server",
    "new_bucket",
    "s3_endpoint",
    "speaks_s3",
]

ENDPOINT_ENV = "MIRRORKV_TEST_S3_ENDPOINT"
STANDARD_ENDPOINT = "http://127.0.0.1:5000"
REGION = "us-east-1"
#: What moto accepts; set in the environment for the session where the server is moto.
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


def admin_client(endpoint: str, **credentials: str) -> Any:
    """A plain boto3 client for setting up and checking what the tests do.

    Its credentials: ``credentials``, else the environment's, else the dummy ones.
    """
    import boto3
    from botocore.config import Config

    if not credentials and "AWS_ACCESS_KEY_ID" not in os.environ:
        credentials = dummy_credentials()

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        config=Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=2),
        **credentials,
    )


def dummy_credentials() -> dict[str, str]:
    """The dummy credentials as boto3 keyword arguments."""
    return {
        "aws_access_key_id": DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }


def answers_s3(endpoint: str) -> bool:
    """True where ``endpoint`` answers ListBuckets as S3 does, even with an S3 error."""
    from botocore.exceptions import ClientError

    client = admin_client(endpoint)
    try:
        client.list_buckets()
        return True
    except ClientError as error:
        return "Code" in error.response.get("Error", {})
    except Exception:
        return False
    finally:
        client.close()


def speaks_s3(endpoint: str) -> bool:
    """True where ``endpoint`` answers ListBuckets as S3 does."""
    client = admin_client(endpoint)
    try:
        client.list_buckets()
        return True
    except Exception:
        return False
    finally:
        client.close()


# moto's routes match a key with ``.``, which stops at a newline, so a key such
# as "a\nb" (valid on S3) would get a 404 from the router (moto 5.2). The server
# we start widens its route patterns to match any character; nothing else changes.
_MOTO_MAIN = """
import sys
from moto.moto_server import utilities
_init = utilities.RegexConverter.__init__
def _any_character(self, url_map, *items):
    _init(self, url_map, *items)
    self.regex = self.regex.replace(".", "[\\\\s\\\\S]")
utilities.RegexConverter.__init__ = _any_character
from moto.server import main
main(sys.argv[1:])
"""


def moto_server(
    log_path: Path, port: int | None = None, env: dict[str, str] | None = None
) -> tuple[ServerProcess, str]:
    """Start moto's HTTP server (a separate process) on ``port`` or a free one.

    ``env`` adds to its environment (e.g. ``INITIAL_NO_AUTH_ACTION_COUNT=0``
    makes moto check credentials).
    Returns the process (``stop()``/``start()`` take it down and bring it back
    on the same port) and its endpoint; :class:`ServiceUnavailable` where it
    will not start.
    """
    try:
        import moto.server  # noqa: F401
    except ImportError as error:
        raise ServiceUnavailable(f"moto[server] is not installed ({error})") from None
    port = port or free_port()
    server = ServerProcess(
        "moto",
        [sys.executable, "-c", _MOTO_MAIN, "-H", "127.0.0.1", "-p", str(port)],
        log_path=log_path,
        env={**DUMMY_CREDENTIALS, **(env or {})},
    )
    endpoint = f"http://127.0.0.1:{port}"
    server.start()
    try:
        wait_until(
            lambda: port_answers("127.0.0.1", port) and answers_s3(endpoint),
            timeout=30,
            what="moto server",
            process=server,
        )
    except ServiceUnavailable:
        server.stop()
        raise
    return server, endpoint


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The S3 endpoint of the session (see the module doc); raises ServiceUnavailable."""
    given = os.environ.get(ENDPOINT_ENV)
    if given:
        yield given
        return
    saved = {name: os.environ.get(name) for name in DUMMY_CREDENTIALS}
    os.environ.update(DUMMY_CREDENTIALS)
    server: ServerProcess | None = None
    try:
        if (
            not own_servers_forced()
            and port_answers("127.0.0.1", 5000)
            and speaks_s3(STANDARD_ENDPOINT)
        ):
            yield STANDARD_ENDPOINT
            return
        server, endpoint = moto_server(tmp_path_factory.mktemp("moto") / "moto.log")
        yield endpoint
    finally:
        if server is not None:
            server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def new_bucket(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The session's endpoint and a new empty bucket, removed when the test ends.

    Skips the test (with the reason) where no S3 can be had.
    """
    try:
        endpoint: str = request.getfixturevalue("s3_endpoint")
    except ServiceUnavailable as error:
        skip_unavailable(error)
        raise
    bucket = unique_name("mkv-").lower()
    client = admin_client(endpoint)
    client.create_bucket(Bucket=bucket)

    def remove() -> None:
        try:
            empty_bucket(client, bucket)
            client.delete_bucket(Bucket=bucket)
        finally:
            client.close()

    request.addfinalizer(remove)
    return endpoint, bucket


def empty_bucket(client: Any, bucket: str) -> None:
    """Delete every object and unfinished upload in ``bucket``."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objects = [{"Key": item["Key"]} for item in page.get("Contents", ())]
        if objects:
            client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", ())
    for upload in uploads:
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


def _s3(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    from mirrorkv.stores.s3 import S3Store

    endpoint, bucket = new_bucket(request)
    return StoreFactory(
        "s3",
        lambda: S3Store(bucket, endpoint_url=endpoint, region=REGION),
        url=f"s3://{bucket}?endpoint_url={quote(endpoint, safe='')}&region={REGION}",
        persistent=True,
        multi_process=True,
        bounded_streaming=True,
        remote=True,
    )


#: Conformance-suite stores this backend provides (merged into ``STORE_FACTORIES``).
FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path], StoreFactory]] = {"s3": _s3}
