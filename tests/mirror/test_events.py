"""S3 event notifications: every delivery shape, key decoding, ordering, and moto end to end.

The hand-written payloads follow the shapes in the AWS pages "Event message
structure" (notification-content-structure) and "EventBridge event message
structure" (ev-events); the end-to-end tests read what moto's server really
puts on an SQS queue, directly and through SNS.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirrorkv.errors import InvalidValue
from mirrorkv.mirror.events import (
    ObjectEvent,
    Position,
    SequencerState,
    compare_sequencers,
    latest_per_key,
    newer,
    parse_events,
    should_apply,
)
from services import ServiceUnavailable, skip_unavailable, unique_name, wait_until
from services.s3 import REGION, admin_client, new_bucket

T0 = datetime(2026, 11, 23, 12, 0, 0, 123000, tzinfo=UTC)


def record(
    name: str = "ObjectCreated:Put",
    key: str = "HappyFace.jpg",
    *,
    bucket: str = "mybucket",
    size: int | None = 1024,
    etag: str | None = "d41d8cd98f00b204e9800998ecf8427e",
    version_id: str | None = None,
    sequencer: str | None = "0055AED6DCD90281E5",
    time: str = "2026-11-23T12:00:00.123Z",
) -> dict[str, Any]:
    """One record as S3 documents it (eventVersion 2.1), the key already encoded."""
    obj: dict[str, Any] = {"key": key}
    if size is not None:
        obj["size"] = size
    if etag is not None:
        obj["eTag"] = etag
    if version_id is not None:
        obj["versionId"] = version_id
    if sequencer is not None:
        obj["sequencer"] = sequencer
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-west-2",
        "eventTime": time,
        "eventName": name,
        "userIdentity": {"principalId": "AIDAJDPLRKLG7UEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {
            "x-amz-request-id": "C3D13FE58DE4C810",
            "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "testConfigRule",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
    }


def notification(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def sns_envelope(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-west-2:123456789012:s3-events",
        "Subject": "Amazon S3 Notification",
        "Message": json.dumps(message),
        "Timestamp": "2026-11-23T12:00:00.200Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-west-2.amazonaws.com/cert.pem",
        "UnsubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe",
    }


def eventbridge(
    detail_type: str = "Object Created",
    key: str = "example-key",
    *,
    size: int | None = 5,
    etag: str | None = "b1946ac92492d2347c6235b4d2611184",
    sequencer: str | None = "617f08299329d189",
    reason: str = "PutObject",
) -> dict[str, Any]:
    obj: dict[str, Any] = {"key": key, "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"}
    if size is not None:
        obj["size"] = size
    if etag is not None:
        obj["etag"] = etag
    if sequencer is not None:
        obj["sequencer"] = sequencer
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": "111122223333",
        "time": "2021-11-12T00:00:00Z",
        "region": "ca-central-1",
        "resources": ["arn:aws:s3:::amzn-s3-demo-bucket1"],
        "detail": {
            "version": "0",
            "bucket": {"name": "amzn-s3-demo-bucket1"},
            "object": obj,
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "source-ip-address": "1.2.3.4",
            "reason": reason,
        },
    }


# -- channels ----------------------------------------------------------------------------------


def test_a_documented_put_record() -> None:
    [event] = parse_events(notification(record(version_id="096fKKXTRTtl3on89fVO.nfljtsv6qko")))
    assert event == ObjectEvent(
        bucket="mybucket",
        key="HappyFace.jpg",
        kind="created",
        time=datetime(2026, 11, 23, 12, 0, 0, 123000, tzinfo=UTC),
        name="ObjectCreated:Put",
        size=1024,
        etag="d41d8cd98f00b204e9800998ecf8427e",
        version_id="096fKKXTRTtl3on89fVO.nfljtsv6qko",
        sequencer="0055AED6DCD90281E5",
    )


@pytest.mark.parametrize(
    "name",
    ["ObjectCreated:Put", "ObjectCreated:Post", "ObjectCreated:Copy",
     "ObjectCreated:CompleteMultipartUpload"],
)  # fmt: skip
def test_every_creation_is_created(name: str) -> None:
    [event] = parse_events(notification(record(name)))
    assert (event.kind, event.name) == ("created", name)


@pytest.mark.parametrize(
    "name",
    ["ObjectRemoved:Delete", "ObjectRemoved:DeleteMarkerCreated",
     "LifecycleExpiration:Delete", "LifecycleExpiration:DeleteMarkerCreated"],
)  # fmt: skip
def test_every_removal_is_removed(name: str) -> None:
    [event] = parse_events(notification(record(name, size=None, etag=None)))
    assert (event.kind, event.name, event.size, event.etag) == ("removed", name, None, None)


@pytest.mark.parametrize(
    ("name", "version_id", "expected"),
    [
        ("ObjectRemoved:Delete", None, False),  # unversioned bucket: gone
        ("ObjectRemoved:Delete", "null", False),  # versioning suspended: the null version
        ("ObjectRemoved:Delete", "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd", True),
        ("LifecycleExpiration:Delete", "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd", True),
        ("ObjectRemoved:DeleteMarkerCreated", "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd", False),
        ("ObjectCreated:Put", "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd", False),
    ],
)
def test_a_removal_of_one_version_needs_a_check(
    name: str, version_id: str | None, expected: bool
) -> None:
    [parsed] = parse_events(notification(record(name, version_id=version_id)))
    assert parsed.needs_check is expected


@pytest.mark.parametrize(
    "name",
    ["ObjectRestore:Post", "ObjectRestore:Completed", "ObjectRestore:Delete",
     "Replication:OperationFailedReplication", "LifecycleTransition", "IntelligentTiering",
     "ObjectTagging:Put", "ObjectAcl:Put", "ReducedRedundancyLostObject", "SomethingNew:Later"],
)  # fmt: skip
def test_other_event_types_are_skipped(name: str) -> None:
    assert parse_events(notification(record(name))) == []
    [kept] = parse_events(notification(record(name), record(key="kept")))
    assert kept.key == "kept"


def test_the_s3_prefix_of_minio_event_names_is_accepted() -> None:
    [event] = parse_events(notification(record("s3:ObjectRemoved:Delete", size=None)))
    assert event.kind == "removed" and event.name == "s3:ObjectRemoved:Delete"


def test_json_text_and_bytes_and_an_sqs_body() -> None:
    payload = notification(record(), record("ObjectRemoved:Delete", size=None, etag=None))
    expected = parse_events(payload)
    assert len(expected) == 2
    text = json.dumps(payload)
    assert parse_events(text) == expected
    assert parse_events(text.encode()) == expected
    assert parse_events(bytearray(text.encode())) == expected
    # An SQS message as boto3's receive_message returns it; a Lambda SQS event.
    assert parse_events({"MessageId": "m", "ReceiptHandle": "r", "Body": text}) == expected
    lambda_sqs = {"Records": [{"eventSource": "aws:sqs", "messageId": "m", "body": text}]}
    assert parse_events(lambda_sqs) == expected


def test_sns_envelopes() -> None:
    payload = notification(record())
    expected = parse_events(payload)
    envelope = sns_envelope(payload)
    assert parse_events(envelope) == expected
    assert parse_events(json.dumps(envelope)) == expected
    # SNS to SQS without raw delivery: the SQS body is the envelope.
    assert parse_events({"Body": json.dumps(envelope), "ReceiptHandle": "r"}) == expected
    lambda_sns = {"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0", "Sns": envelope}]}
    assert parse_events(lambda_sns) == expected
    confirmation = {**sns_envelope(payload), "Type": "SubscriptionConfirmation"}
    assert parse_events(confirmation) == []


def test_eventbridge_events() -> None:
    [created] = parse_events(eventbridge())
    assert created == ObjectEvent(
        bucket="amzn-s3-demo-bucket1",
        key="example-key",
        kind="created",
        time=datetime(2021, 11, 12, tzinfo=UTC),
        name="Object Created",
        size=5,
        etag="b1946ac92492d2347c6235b4d2611184",
        version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
        sequencer="617F08299329D189",
    )
    [deleted] = parse_events(
        eventbridge("Object Deleted", size=None, etag=None, reason="DeleteObject")
    )
    assert (deleted.kind, deleted.size, deleted.etag) == ("removed", None, None)
    assert parse_events(eventbridge("Object Restore Completed")) == []
    assert parse_events(eventbridge("Object Tags Added")) == []


def test_eventbridge_as_moto_sends_it() -> None:
    # moto 5 spells the etag "eTag" and gives "time" as seconds since the epoch.
    event = eventbridge(etag=None)
    event["detail"]["object"]["eTag"] = "abc"
    event["time"] = 1637020800.5
    [parsed] = parse_events(event)
    assert parsed.etag == "abc"
    assert parsed.time == datetime(2021, 11, 16, 0, 0, 0, 500000, tzinfo=UTC)


def test_the_test_event_is_ignored() -> None:
    test_event = {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2014-10-13T15:57:02.089Z",
        "Bucket": "bucketname",
        "RequestId": "5582815E1AEA5ADF",
        "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
    }
    assert parse_events(test_event) == []
    assert parse_events(json.dumps(test_event)) == []
    assert parse_events(sns_envelope(test_event)) == []


def test_a_list_of_anything() -> None:
    mixed = [
        notification(record(key="a")),
        json.dumps(notification(record(key="b"))),
        sns_envelope(notification(record(key="c"))),
        eventbridge(key="d"),
        {"Event": "s3:TestEvent"},
        [notification(record(key="e"))],
    ]
    assert [event.key for event in parse_events(mixed)] == ["a", "b", "c", "d", "e"]
    assert parse_events([]) == []
    assert parse_events({"Records": []}) == []


def test_quotes_are_stripped_from_etags_and_sequencers_upper_cased() -> None:
    [event] = parse_events(notification(record(etag='"abc-2"', sequencer="00ab")))
    assert (event.etag, event.sequencer) == ("abc-2", "00AB")


def test_times_are_utc() -> None:
    [event] = parse_events(notification(record(time="2026-11-23T13:00:00.5+01:00")))
    assert event.time == datetime(2026, 11, 23, 12, 0, 0, 500000, tzinfo=UTC)
    assert event.time.tzinfo is UTC


# -- keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "key"),
    [
        ("red+flower.jpg", "red flower.jpg"),  # the AWS documentation's own example
        ("c%2B%2B/gcc+12.tar", "c++/gcc 12.tar"),
        ("100%25+sure", "100% sure"),
        ("%25%32%30", "%20"),  # decoded once, never twice
        ("caf%C3%A9/%E2%9C%93.txt", "café/✓.txt"),
        ("dt%3D2018-05-04/_SUCCESS", "dt=2018-05-04/_SUCCESS"),
        ("a%2Fb/c", "a/b/c"),
        ("a//b/../c", "a//b/../c"),
        ("+leading+and+trailing+", " leading and trailing "),
    ],
)
def test_keys_are_form_decoded(encoded: str, key: str) -> None:
    [event] = parse_events(notification(record(key=encoded)))
    assert event.key == key
    [bridged] = parse_events(eventbridge(key=encoded))
    assert bridged.key == key


@pytest.mark.parametrize("key", ["red flower.jpg", "c++ 100%", "日本/語 ✓", "a\nb", "~!@#$^&*()"])
def test_keys_round_trip_through_form_encoding(key: str) -> None:
    [event] = parse_events(notification(record(key=quote_plus(key))))
    assert event.key == key


# -- malformed input ---------------------------------------------------------------------------


def broken(path: tuple[str, ...], value: object = None, *, delete: bool = False) -> dict[str, Any]:
    payload = notification(record(key="fine"), record(key="also-fine"))
    target: Any = payload["Records"][1]
    for name in path[:-1]:
        target = target[name]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return payload


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xff\xfe", "not UTF-8"),
        ("{not json", "not JSON"),
        ('"a string"', "holding a string"),
        (42, "got int"),
        (None, "got NoneType"),
        ({"hello": "world"}, "not an S3 event notification"),
        ({"Records": "nope"}, "expected a list"),
        ({"Records": [7]}, "expected an object"),
        (broken(("eventName",), delete=True), "Records[1].eventName"),
        (broken(("eventName",), 3), "eventName: expected a string"),
        (broken(("eventTime",), "yesterday"), "not an ISO 8601 time"),
        (broken(("eventTime",), delete=True), "eventTime"),
        (broken(("s3",), delete=True), "Records[1].s3"),
        (broken(("s3", "bucket", "name"), ""), "empty bucket name"),
        (broken(("s3", "object"), []), "s3.object: expected an object"),
        (broken(("s3", "object", "key"), delete=True), "object.key"),
        (broken(("s3", "object", "key"), ""), "object.key"),
        (broken(("s3", "object", "key"), "%ff%fe"), "not UTF-8"),
        (broken(("s3", "object", "key"), "nul%00"), "object.key"),
        (broken(("s3", "object", "key"), "x" * 1025), "object.key"),
        (broken(("s3", "object", "size"), -1), "byte count"),
        (broken(("s3", "object", "size"), "12kB"), "byte count"),
        (broken(("s3", "object", "size"), True), "byte count"),
        (broken(("s3", "object", "eTag"), 12), "eTag"),
        (broken(("s3", "object", "versionId"), ["v"]), "versionId"),
        (broken(("s3", "object", "sequencer"), "0055XYZ"), "hexadecimal"),
        (broken(("s3", "object", "sequencer"), 55), "hexadecimal"),
        ({"Type": "Notification", "Message": 5}, "Message"),
        ({"Type": "Notification", "Message": "{"}, "not JSON"),
        ({"Body": None}, "Body"),
        ({"source": "aws.s3", "detail-type": "Object Created"}, "detail"),
        ({"source": "aws.s3", "detail-type": 5}, "detail-type"),
    ],
)
def test_malformed_input_is_an_invalid_value(payload: object, message: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        parse_events(payload)
    assert message in str(caught.value), str(caught.value)


def test_a_batch_with_one_bad_record_gives_nothing() -> None:
    payload = [notification(record(key="good")), broken(("eventTime",), "soon")]
    with pytest.raises(InvalidValue, match=r"payload\[1\]\.Records\[1\]\.eventTime"):
        parse_events(payload)


def test_eventbridge_malformed() -> None:
    event = eventbridge()
    event["detail"]["object"]["size"] = "big"
    with pytest.raises(InvalidValue, match=r"detail\.object\.size"):
        parse_events(event)
    event = eventbridge()
    event["time"] = float("inf")
    with pytest.raises(InvalidValue, match="not a time"):
        parse_events(event)


# -- ordering ----------------------------------------------------------------------------------


def event(
    kind: str = "created",
    *,
    sequencer: str | None = None,
    time: datetime = T0,
    etag: str | None = "e1",
    key: str = "k",
) -> ObjectEvent:
    return ObjectEvent(
        bucket="b",
        key=key,
        kind="created" if kind == "created" else "removed",
        time=time,
        name="ObjectCreated:Put" if kind == "created" else "ObjectRemoved:Delete",
        size=1 if kind == "created" else None,
        etag=etag if kind == "created" else None,
        sequencer=sequencer,
    )


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("0055AED6DCD90281E5", "0055AED6DCD90281E6", -1),
        ("0055AED6DCD90281E5", "0055aed6dcd90281e5", 0),
        ("AB", "AB00", 0),  # right-padded with zeros: equal
        ("AB", "AB01", -1),
        ("AC", "AB01", 1),  # "AC00" > "AB01": not compared as numbers
        ("1", "0F", 1),  # "10" > "0F"
        ("0064D3901D00059242", "0064D3901D0005924", 1),
    ],
)
def test_sequencers_compare_as_aws_documents(a: str, b: str, expected: int) -> None:
    assert compare_sequencers(a, b) == expected
    assert compare_sequencers(b, a) == -expected


def test_compare_sequencers_rejects_non_hex() -> None:
    with pytest.raises(InvalidValue):
        compare_sequencers("", "AB")
    with pytest.raises(InvalidValue):
        compare_sequencers("G1", "AB")


def test_the_sequencer_wins_over_arrival_and_time() -> None:
    put = event(sequencer="0055AED6DCD90281E5", time=T0 + timedelta(seconds=5))
    delete = event("removed", sequencer="0055AED6DCD90281F0", time=T0)
    assert newer(delete, put) and not newer(put, delete)
    state = SequencerState()
    assert state.offer(delete)
    assert not state.offer(put)  # arrived late: stale
    assert not state.offer(delete)  # delivered twice: a duplicate
    assert latest_per_key([put, delete]) == latest_per_key([delete, put]) == {("b", "k"): delete}


def test_without_sequencers_time_decides_and_creation_wins_a_tie() -> None:
    put = event(time=T0)
    later_delete = event("removed", time=T0 + timedelta(milliseconds=1))
    same_time_delete = event("removed", time=T0)
    assert newer(later_delete, put)
    assert newer(put, same_time_delete) and not newer(same_time_delete, put)
    assert latest_per_key([put, same_time_delete])[("b", "k")] is put
    assert latest_per_key([same_time_delete, put])[("b", "k")] is put


def test_a_sequencer_on_only_one_side_falls_back_to_time() -> None:
    mirrored_write = event(time=T0 + timedelta(seconds=1))  # recorded without a sequencer
    old_event = event("removed", sequencer="00AA", time=T0)
    assert not should_apply(old_event, mirrored_write.position)
    assert should_apply(old_event, None)


def test_should_apply_takes_a_stored_position_or_a_bare_sequencer() -> None:
    first = event(sequencer="0055AED6DCD90281E5")
    second = event("removed", sequencer="0055AED6DCD90281E6")
    assert should_apply(second, str(first.position))
    assert not should_apply(first, str(second.position))
    assert should_apply(second, "0055AED6DCD90281E5")
    assert not should_apply(first, "0055AED6DCD90281E5")  # a duplicate
    assert not should_apply(first, "0055aed6dcd90281e50")  # equal after padding
    assert should_apply(event(), "0055AED6DCD90281E5")  # no sequencer, no time: cannot tell
    with pytest.raises(InvalidValue):
        should_apply(first, "zz")


def test_positions_round_trip_as_text() -> None:
    for position in (
        event(sequencer="00AB").position,
        event("removed").position,
        Position(sequencer=None, time=T0, kind="created", etag=None),
    ):
        assert Position.parse(str(position)) == position
    with pytest.raises(InvalidValue):
        Position.parse("garbage")
    with pytest.raises(InvalidValue):
        Position.parse("|not a time|created|")


def test_the_state_lives_in_the_mapping_given() -> None:
    store: dict[tuple[str, str], str] = {}
    state = SequencerState(store)
    assert state.last("b", "k") is None
    put = event(sequencer="01")
    assert state.offer(put)
    assert store == {("b", "k"): str(put.position)}
    assert SequencerState(store).last("b", "k") == put.position
    assert not SequencerState(store).should_apply(put)


def test_latest_per_key_keeps_keys_and_buckets_apart() -> None:
    a1 = event(sequencer="01", key="a")
    a2 = event("removed", sequencer="02", key="a")
    b1 = event(sequencer="05", key="b")
    other_bucket = ObjectEvent(
        bucket="c", key="a", kind="created", time=T0, name="ObjectCreated:Put", sequencer="00"
    )
    assert latest_per_key([a2, b1, other_bucket, a1]) == {
        ("b", "a"): a2,
        ("b", "b"): b1,
        ("c", "a"): other_bucket,
    }


# A key's history: distinct sequencer ranks, each maybe right-padded with zeros
# (which must not change its place), or no sequencers and times that may tie.
sequenced_histories = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=2**40),
        st.integers(min_value=0, max_value=3),
        st.sampled_from(["created", "removed"]),
        st.sampled_from(["e1", "e2", "e3"]),
    ),
    min_size=1,
    max_size=8,
    unique_by=lambda item: item[0],
)

unsequenced_histories = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=5),
        st.sampled_from(["created", "removed"]),
        st.sampled_from(["e1", "e2", "e3"]),
    ),
    min_size=1,
    max_size=8,
)


def final_state(events: list[ObjectEvent]) -> tuple[str, str | None] | None:
    """What a mirror folding ``events`` in this order ends with for the key."""
    state = SequencerState()
    last: ObjectEvent | None = None
    for item in events:
        if state.offer(item):
            last = item
    return None if last is None else (last.kind, last.etag)


def check_permutations(events: list[ObjectEvent], data: st.DataObject) -> None:
    expected = final_state(events)
    [latest] = latest_per_key(events).values()
    assert (latest.kind, latest.etag) == expected
    for _ in range(5):
        shuffled = data.draw(st.permutations(events))
        assert final_state(shuffled) == expected
        assert latest_per_key(shuffled) == latest_per_key(events)


@settings(max_examples=200, deadline=None)
@given(history=sequenced_histories, data=st.data())
def test_any_permutation_of_sequenced_events_ends_the_same(
    history: list[tuple[int, int, str, str]], data: st.DataObject
) -> None:
    # Strip the rank's own trailing zeros so that padding never makes two ranks equal.
    events = [
        event(kind, sequencer=format(rank, "X").rstrip("0") + "0" * pad, etag=etag)
        for rank, pad, kind, etag in history
        if format(rank, "X").rstrip("0")
    ]
    ranks = [item.sequencer.rstrip("0") for item in events if item.sequencer]
    if not events or len(set(ranks)) != len(ranks):
        return
    check_permutations(events, data)
    # The greatest sequencer is the final state, whatever the times say.
    top = max(events, key=lambda item: (item.sequencer or "").rstrip("0"))
    assert final_state(events) == (top.kind, top.etag)


@settings(max_examples=200, deadline=None)
@given(history=unsequenced_histories, data=st.data())
def test_any_permutation_of_unsequenced_events_ends_the_same(
    history: list[tuple[int, str, str]], data: st.DataObject
) -> None:
    events = [
        event(kind, time=T0 + timedelta(milliseconds=ms), etag=etag) for ms, kind, etag in history
    ]
    check_permutations(events, data)


# -- moto end to end ---------------------------------------------------------------------------


@pytest.fixture
def moto_bucket(request: pytest.FixtureRequest) -> tuple[str, str]:
    return new_bucket(request)


def sqs_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)


@pytest.fixture
def queue(moto_bucket: tuple[str, str]) -> Iterator[tuple[Any, str, str]]:
    """An SQS queue on the S3 endpoint's server (skips where it speaks no SQS)."""
    endpoint, _ = moto_bucket
    sqs = sqs_client(endpoint)
    try:
        url = sqs.create_queue(QueueName=unique_name("mkv-events-"))["QueueUrl"]
    except Exception as error:  # a real S3 endpoint, or a server without SQS
        sqs.close()
        skip_unavailable(ServiceUnavailable(f"no SQS beside the S3 endpoint ({error})"))
        raise
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    try:
        yield sqs, url, arn
    finally:
        sqs.delete_queue(QueueUrl=url)
        sqs.close()


def drain(sqs: Any, url: str, expected: int) -> list[dict[str, Any]]:
    """The queue's messages, waiting (briefly) until ``expected`` of them arrived."""
    messages: list[dict[str, Any]] = []

    def enough() -> bool:
        reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        for message in reply.get("Messages", ()):
            messages.append(message)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages) >= expected

    wait_until(enough, timeout=10, what=f"{expected} SQS messages")
    return messages


KEYS = ["plain.txt", "dir/red flower.jpg", "c++ 100% sûr/✓+x.txt"]


def test_moto_delivers_to_sqs_what_we_parse(
    moto_bucket: tuple[str, str], queue: tuple[Any, str, str]
) -> None:
    endpoint, bucket = moto_bucket
    sqs, url, arn = queue
    s3 = admin_client(endpoint)
    try:
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
                ]
            },
        )
        for key in KEYS:
            s3.put_object(Bucket=bucket, Key=key, Body=b"hello")
        s3.delete_object(Bucket=bucket, Key=KEYS[2])
        # moto sends an s3:TestEvent when the configuration is set, then one per change.
        messages = drain(sqs, url, expected=len(KEYS) + 2)
    finally:
        s3.close()
    bodies = [json.loads(message["Body"]) for message in messages]
    assert any(body.get("Event") == "s3:TestEvent" for body in bodies)
    events = parse_events([message["Body"] for message in messages])
    assert [(item.kind, item.key) for item in events] == [
        *(("created", key) for key in KEYS),
        ("removed", KEYS[2]),
    ]
    for item in events:
        assert item.bucket == bucket
        assert item.sequencer is None  # moto 5 leaves it out: ordered by time
        assert item.time.tzinfo is UTC
        assert abs(item.time - datetime.now(UTC)) < timedelta(minutes=5)
    created = events[0]
    assert (created.size, created.etag) == (5, "5d41402abc4b2a76b9719d911017c592")
    assert created.name == "ObjectCreated:Put"
    assert events[-1].name == "ObjectRemoved:Delete"
    # The same messages parsed as boto3 hands them over.
    assert parse_events(messages) == events
    # The key order holds: the removal is the last word on its key.
    assert latest_per_key(events)[(bucket, KEYS[2])].kind == "removed"


def test_moto_delivers_through_sns_to_sqs(
    moto_bucket: tuple[str, str], queue: tuple[Any, str, str]
) -> None:
    import boto3

    endpoint, bucket = moto_bucket
    sqs, url, queue_arn = queue
    sns = boto3.client("sns", endpoint_url=endpoint, region_name=REGION)
    s3 = admin_client(endpoint)
    topic = sns.create_topic(Name=unique_name("mkv-events-"))["TopicArn"]
    try:
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "TopicConfigurations": [{"TopicArn": topic, "Events": ["s3:ObjectCreated:*"]}]
            },
        )
        s3.put_object(Bucket=bucket, Key="via sns/a+b.txt", Body=b"x")
        messages = drain(sqs, url, expected=2)
    finally:
        sns.delete_topic(TopicArn=topic)
        sns.close()
        s3.close()
    envelopes = [json.loads(message["Body"]) for message in messages]
    assert all(envelope["Type"] == "Notification" for envelope in envelopes)
    [created] = parse_events([message["Body"] for message in messages])
    assert (created.kind, created.key, created.size) == ("created", "via sns/a+b.txt", 1)


def test_parsing_does_not_mutate_the_payload() -> None:
    payload = notification(record(), record("ObjectRemoved:Delete", size=None))
    before = copy.deepcopy(payload)
    parse_events(payload)
    assert payload == before
