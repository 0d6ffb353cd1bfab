"""watch_sqs end to end on moto: S3 notifies an SQS queue, the watcher keeps an index true."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mirrorkv.errors import InvalidValue, MirrorKVError
from mirrorkv.mirror import SQLiteIndex
from mirrorkv.mirror.watch import WatchReport, sqs_client, watch_sqs
from services import unique_name
from services.s3 import REGION, admin_client, new_bucket


def notifying_queue(endpoint: str, bucket: str) -> tuple[Any, str]:
    """An SQS queue that ``bucket`` sends its object events to; (sqs client, queue URL)."""
    import boto3

    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    queue_url = sqs.create_queue(QueueName=unique_name("mkv-q-"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    admin_client(endpoint).put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
            ]
        },
    )
    return sqs, queue_url


@pytest.fixture
def queue(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, Any, str]]:
    endpoint, bucket = new_bucket(request)
    sqs, queue_url = notifying_queue(endpoint, bucket)
    yield endpoint, bucket, sqs, queue_url
    sqs.delete_queue(QueueUrl=queue_url)
    sqs.close()


@pytest.fixture
def index(tmp_path: Path) -> Iterator[SQLiteIndex]:
    with SQLiteIndex(tmp_path / "index.db") as opened:
        yield opened


def bucket_state(client: Any, bucket: str) -> dict[str, tuple[int, str]]:
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {item["Key"]: (item["Size"], item["ETag"].strip('"')) for item in listed}


def index_state(index: SQLiteIndex, bucket: str) -> dict[str, tuple[int, str]]:
    return {meta.key: (meta.size, meta.etag) for meta in index.list(bucket)}


def test_the_index_follows_the_bucket(queue: tuple[str, str, Any, str], index: SQLiteIndex) -> None:
    endpoint, bucket, sqs, queue_url = queue
    s3 = admin_client(endpoint)
    for number in range(12):
        s3.put_object(Bucket=bucket, Key=f"dir/{number:02}.txt", Body=b"x" * number)
    time.sleep(0.01)  # moto has no sequencer: order falls back to millisecond times
    s3.put_object(Bucket=bucket, Key="dir/03.txt", Body=b"rewritten")
    for number in (0, 5, 7):
        s3.delete_object(Bucket=bucket, Key=f"dir/{number:02}.txt")
    s3.put_object(Bucket=bucket, Key="space and+plus é.txt", Body=b"odd key")
    batches: list[WatchReport] = []

    report = watch_sqs(
        queue_url,
        index,
        sqs_client=sqs,
        wait_seconds=1,
        until_empty=True,
        on_batch=batches.append,
    )

    assert index_state(index, bucket) == bucket_state(s3, bucket)
    assert len(index_state(index, bucket)) == 10
    # 14 puts, 3 deletes, and the test event S3 sends when notification is configured.
    assert report.messages == report.applied == 18
    assert report.malformed == report.dropped == 0
    assert report.events.recorded == 14 and report.events.removed == 3
    assert sum(batch.messages for batch in batches) == 18
    assert sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0).get("Messages") is None
    s3.close()


def test_malformed_messages_stay_until_max_receive_then_go(
    queue: tuple[str, str, Any, str], index: SQLiteIndex
) -> None:
    _, bucket, sqs, queue_url = queue
    sqs.purge_queue(QueueUrl=queue_url)  # the test event
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "0"})
    sqs.send_message(QueueUrl=queue_url, MessageBody="not json")
    good = {"Records": [_record(bucket, "k", 3)]}
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(good))

    first = watch_sqs(
        queue_url, index, sqs_client=sqs, wait_seconds=0, max_receive=2, stop=_after(1)
    )
    assert (first.applied, first.malformed, first.dropped) == (1, 1, 0)
    assert [meta.key for meta in index.list(bucket)] == ["k"]

    second = watch_sqs(
        queue_url, index, sqs_client=sqs, wait_seconds=0, max_receive=2, until_empty=True
    )
    assert second.malformed == second.dropped == 1
    assert sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0).get("Messages") is None


def test_buckets_limit_what_is_applied(
    queue: tuple[str, str, Any, str], index: SQLiteIndex
) -> None:
    _, bucket, sqs, queue_url = queue
    body = {"Records": [_record(bucket, "mine", 1), _record("someone-else", "theirs", 2)]}
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))
    report = watch_sqs(
        queue_url, index, sqs_client=sqs, wait_seconds=0, until_empty=True, buckets={bucket: "idx"}
    )
    assert report.events.recorded == 1 and report.events.skipped == 1
    assert [meta.key for meta in index.list("idx")] == ["mine"]
    assert index.buckets() == ["idx"]


def test_unreachable_sqs_backs_off_until_stopped(index: SQLiteIndex) -> None:
    from services import free_port

    url = f"http://127.0.0.1:{free_port()}/123456789012/nowhere"
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    started = time.monotonic()
    report = watch_sqs(url, index, sqs_client=_quick_client(url), wait_seconds=0, stop=stop)
    timer.join()
    assert report.retries >= 1 and report.receives == 0
    assert time.monotonic() - started < 3


def test_errors_retrying_cannot_fix_raise(
    queue: tuple[str, str, Any, str], index: SQLiteIndex
) -> None:
    _, _, sqs, queue_url = queue
    with pytest.raises(MirrorKVError) as raised:
        watch_sqs(queue_url + "-missing", index, sqs_client=sqs, wait_seconds=0)
    assert "SQS queue" in str(raised.value)
    with pytest.raises(InvalidValue):
        watch_sqs(queue_url, index, sqs_client=sqs, max_messages=11)
    with pytest.raises(InvalidValue):
        sqs_client("s3://bucket/queue")


def _quick_client(url: str) -> Any:
    import boto3
    from botocore.config import Config

    endpoint = url.rsplit("/", 2)[0]
    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name=REGION,
        config=Config(retries={"max_attempts": 1}, connect_timeout=0.2, read_timeout=0.5),
    )


def _after(receives: int) -> Any:
    """A stop callable that says stop once it has been asked ``receives`` + 1 times."""
    asked = 0

    def stop() -> bool:
        nonlocal asked
        asked += 1
        return asked > receives

    return stop


def _record(bucket: str, key: str, size: int) -> dict[str, Any]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": "2026-01-01T00:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": bucket},
            "object": {"key": key, "size": size, "eTag": "0" * 32, "sequencer": "01"},
        },
    }


def test_a_missing_boto3_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from mirrorkv.errors import NotSupported

    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(NotSupported, match=r"mirrorkv\[s3\]"):
        sqs_client("https://sqs.eu-west-1.amazonaws.com/123456789012/q")


def test_sqs_client_takes_endpoint_and_region_from_the_queue_url() -> None:
    aws = sqs_client("https://sqs.eu-west-1.amazonaws.com/123456789012/q")
    assert aws.meta.region_name == "eu-west-1"
    assert aws.meta.endpoint_url == "https://sqs.eu-west-1.amazonaws.com"
    local = sqs_client("http://127.0.0.1:4566/000000000000/q", region="ap-south-1")
    assert (local.meta.region_name, local.meta.endpoint_url) == (
        "ap-south-1",
        "http://127.0.0.1:4566",
    )


def test_an_index_error_leaves_the_message_in_the_queue(
    queue: tuple[str, str, Any, str], tmp_path: Path
) -> None:
    _, bucket, sqs, queue_url = queue
    sqs.purge_queue(QueueUrl=queue_url)
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "0"})
    sqs.send_message(
        QueueUrl=queue_url, MessageBody=json.dumps({"Records": [_record(bucket, "k", 1)]})
    )
    closed = SQLiteIndex(tmp_path / "closed.db")
    closed.close()
    with pytest.raises(MirrorKVError):
        watch_sqs(queue_url, closed, sqs_client=sqs, wait_seconds=0, until_empty=True)
    left = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0).get("Messages", [])
    assert len(left) == 1
