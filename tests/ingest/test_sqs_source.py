"""The SQS notification source: NOAA-shaped bodies, then a real queue (moto over HTTP on loopback).

NOAA's SNS topic NewGOES19Object publishes one S3 event notification per new object of
noaa-goes19; a user's queue subscribed to it receives the SNS envelope (or, with raw
message delivery, the S3 event itself). Here moto plays S3, SNS and SQS: the topic, the
queue and its subscription are real, and the notifications go through SNS.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from prometheus_client import REGISTRY

from foundation.addresses import free_port
from foundation.clock import wait_until
from foundation.errors import ConfigError, IngestError, NotificationError
from foundation.retry import Retry
from ingest.bus import InProcessBus
from ingest.checkpoint import Checkpoint
from ingest.daemon import DaemonSettings, IngestDaemon
from ingest.events import FRAMES_TOPIC, GLM_TOPIC, FrameEvent
from ingest.filenames import parse_filename
from ingest.quarantine import Quarantine
from ingest.sources import Candidate, FrameFilter, SourceContext, get_source
from ingest.sources.sqs import ObjectCreated, SqsSource, parse_body
from tests.conftest import make_public_bucket
from tests.ingest.test_noaa_s3 import key_of
from tests.support.clock import FakeClock

FRAME = "OR_ABI-L1b-RadM1-M6C13_G19_s20241671801178_e20241671801235_c20241671801270.nc"
NOAA_TOPIC = "arn:aws:sns:us-east-1:123901341784:NewGOES19Object"
CLOCK_START = datetime(2024, 6, 15, 18, 30, tzinfo=UTC)


# -- NOAA-shaped bodies --------------------------------------------------------------------


def s3_record(bucket: str, key: str, size: int, event: str = "ObjectCreated:Put") -> dict[str, Any]:
    """One record as S3 writes it for NOAA's buckets (the key URL-encoded, as S3 does)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2024-06-15T18:02:01.350Z",
        "eventName": event,
        "userIdentity": {"principalId": "AWS:AROAEXAMPLE:noaa-ingest"},
        "requestParameters": {"sourceIPAddress": "140.90.0.1"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "NewGOES19Object",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A2JNKXEXAMPLE"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": {
                "key": quote_plus(key, safe="/"),
                "size": size,
                "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                "sequencer": "0066D5F0A1B2C3D4E5",
            },
        },
    }


def s3_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def sns_envelope(message: str, topic: str = NOAA_TOPIC, kind: str = "Notification") -> str:
    """The body an SQS queue subscribed to the topic receives (raw message delivery off)."""
    return json.dumps({
        "Type": kind,
        "MessageId": str(uuid.uuid4()),
        "TopicArn": topic,
        "Subject": "Amazon S3 Notification",
        "Message": message,
        "Timestamp": "2024-06-15T18:02:01.412Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLEpH+..",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem",
        "UnsubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic}:0b41",
    })  # fmt: skip


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("ltgcast_ingest_sqs_messages_refused_total", {"reason": reason}) or 0.0


# -- the body parser -----------------------------------------------------------------------


def test_sns_enveloped_and_raw_bodies_name_the_same_objects() -> None:
    key = f"ABI-L1b-RadM/2024/167/18/{FRAME}"
    event = json.dumps(s3_event(s3_record("noaa-goes19", key, 412_345)))
    expected = [ObjectCreated("noaa-goes19", key, 412_345, "ObjectCreated:Put", "2024-06-15T18:02:01.350Z")]
    assert parse_body(sns_envelope(event)) == expected
    assert parse_body(event) == expected


def test_multi_record_bodies_keep_created_objects_and_ignore_other_events() -> None:
    glm = "GLM-L2-LCFA/2024/167/18/OR_GLM-L2-LCFA_G19_s20241671800000_e20241671800200_c20241671800216.nc"
    body = json.dumps(s3_event(
        s3_record("noaa-goes19", f"ABI-L1b-RadM/2024/167/18/{FRAME}", 10),
        s3_record("noaa-goes19", glm, 20, event="ObjectCreated:CompleteMultipartUpload"),
        s3_record("noaa-goes19", glm, 0, event="ObjectRemoved:Delete"),
    ))  # fmt: skip
    assert [(o.key.rsplit("/", 1)[-1], o.size, o.event_name) for o in parse_body(sns_envelope(body))] == [
        (FRAME, 10, "ObjectCreated:Put"),
        (glm.rsplit("/", 1)[-1], 20, "ObjectCreated:CompleteMultipartUpload"),
    ]


def test_keys_are_url_decoded_as_s3_encodes_them() -> None:
    record = s3_record("noaa-goes19", "x", 1)
    record["s3"]["object"]["key"] = "ABI-L1b-RadM/2024/167/18/OR+a%2Bb%5F%28c%29.nc"  # space as '+', a real '+' as %2B
    (note,) = parse_body(json.dumps(s3_event(record)))
    assert note.key == "ABI-L1b-RadM/2024/167/18/OR a+b_(c).nc"
    assert parse_body(json.dumps(s3_event(s3_record("noaa-goes19", "A-B/2024/1 2+3.nc", 1))))[0].key == (
        "A-B/2024/1 2+3.nc"  # the builder encodes like S3; the parser gives back the key as stored
    )


def _record_with(path: tuple[str, ...], value: object) -> str:
    record = s3_record("noaa-goes19", f"ABI-L1b-RadM/2024/167/18/{FRAME}", 10)
    node: Any = record
    for step in path[:-1]:
        node = node[step]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return json.dumps(s3_event(record))


GARBAGE = [
    ("not JSON", "hello, queue", "not_json", "expected the message body to be JSON, found 'hello, queue'"),
    ("empty body", "", "not_json", "expected the message body to be JSON"),
    ("nested a million deep", "[" * 1_000_000, "not_json", "(RecursionError)"),
    ("a JSON list", "[1, 2]", "not_s3_event", "found a JSON list"),
    ("JSON null", "null", "not_s3_event", "found a JSON NoneType"),
    ("no Records", '{"Records": []}', "not_s3_event", "expected Records, a non-empty list"),
    ("raw test event", json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2024-06-15T18:00:00Z",
                                   "Bucket": "noaa-goes19", "RequestId": "5582815E1AEA5ADF"}),
     "test_event", "found an s3:TestEvent (bucket 'noaa-goes19'"),
    ("enveloped test event", sns_envelope(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})),
     "test_event", "found an s3:TestEvent"),
    ("subscription confirmation", sns_envelope("You have chosen to subscribe", kind="SubscriptionConfirmation"),
     "not_s3_event", "expected an SNS message of Type 'Notification', found Type 'SubscriptionConfirmation'"),
    ("envelope around prose", sns_envelope("a new object!"), "not_json", "expected the SNS Message to be JSON"),
    ("envelope without a string", json.dumps({"Type": "Notification", "Message": {"Records": []}}), "not_s3_event",
     "expected the SNS Message to be a JSON string, found dict"),
    ("size as text", _record_with(("s3", "object", "size"), "412345"), "not_s3_event",
     "expected Records[0].s3.object.size to be a byte count (integer >= 0), found '412345'"),
    ("negative size", _record_with(("s3", "object", "size"), -1), "not_s3_event", "found -1"),
    ("size true", _record_with(("s3", "object", "size"), True), "not_s3_event", "found True"),
    ("no key", _record_with(("s3", "object", "key"), ...), "not_s3_event", "expected Records[0].s3.object.key"),
    ("bucket a number", _record_with(("s3", "bucket", "name"), 19), "not_s3_event", "found 19 and"),
    ("another service", _record_with(("eventSource",), "aws:sqs"), "not_s3_event", "found 'aws:sqs'"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "body", "reason", "says"), GARBAGE, ids=[g[0] for g in GARBAGE])
def test_bodies_that_are_no_object_notification_are_refused_naming_what_was_found(
    what: str, body: str, reason: str, says: str
) -> None:
    with pytest.raises(NotificationError) as caught:
        parse_body(body)
    assert caught.value.reason == reason
    assert says in caught.value.detail
    assert "\n" not in caught.value.detail
    assert len(caught.value.detail) < 400  # a huge hostile body is not copied into the log


# -- configuration -------------------------------------------------------------------------


def context(tmp_path: Path, **filter_changes: Any) -> SourceContext:
    frame_filter = FrameFilter(sectors=("M1",), **filter_changes)
    return SourceContext(cache=tmp_path / "cache", clock=FakeClock(CLOCK_START), frame_filter=frame_filter)


def test_uri_options_are_checked_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"expected one of: dir:PATH, s3://BUCKET, sim:\[\?options\], sqs://QUEUE"):
        get_source("amqp://q", context(tmp_path))
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['hours'\].*valid: bucket, endpoint, keep_h"):
        get_source("sqs://q?bucket=noaa-goes19&hours=2", context(tmp_path))
    with pytest.raises(ConfigError, match=r"expected sqs://QUEUE_NAME\[\?options\].*found 'sqs://q/sub"):
        get_source("sqs://q/sub?bucket=noaa-goes19", context(tmp_path))
    with pytest.raises(ConfigError, match=r"expected wait_s in 0..20.*found 21"):
        get_source("sqs://q?bucket=noaa-goes19&wait_s=21", context(tmp_path))
    with pytest.raises(ConfigError, match="bad number in source options"):
        get_source("sqs://q?bucket=noaa-goes19&visibility_s=soon", context(tmp_path))
    with pytest.raises(ConfigError, match=r"expected \?bucket=noaa-goes19 .* found satellites any"):
        get_source("sqs://q", context(tmp_path))
    source = get_source("sqs://ltgcast-goes18.fifo?wait_s=0&visibility_s=30", context(tmp_path, satellites=("G18",)))
    assert isinstance(source, SqsSource)
    assert (source.queue, source.objects.bucket, source.wait_s, source.visibility_s) == (
        "ltgcast-goes18.fifo", "noaa-goes18", 0, 30,
    )  # fmt: skip


# -- a real queue (moto over HTTP) ---------------------------------------------------------


@dataclass
class Noaa:
    """A NOAA-like bucket, the NewGOES19Object topic and a user's queue subscribed to it."""

    endpoint: str
    bucket: str
    queue: str
    queue_url: str
    topic: str
    s3: Any
    sns: Any
    sqs: Any

    def upload(self, path: Path) -> str:
        key = key_of(path)
        self.s3.upload_file(str(path), self.bucket, key)
        return key

    def notify(self, key: str, size: int, bucket: str | None = None) -> None:
        """What NOAA's S3 → SNS pipeline publishes for a new object."""
        message = json.dumps(s3_event(s3_record(bucket or self.bucket, key, size)))
        self.sns.publish(TopicArn=self.topic, Message=message, Subject="Amazon S3 Notification")

    def counts(self) -> tuple[int, int]:
        """Messages (visible, in flight) on the queue."""
        attrs = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["All"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def uri(self, **options: object) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"bucket": self.bucket, "endpoint": self.endpoint, **options}.items())
        return f"sqs://{self.queue}?{query}"


def _noaa(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, *, raw: bool) -> Iterator[Noaa]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_CONFIG_FILE": "/nonexistent",
    }.items():
        monkeypatch.setenv(name, value)  # the user's credentials, by boto3's usual chain (moto takes any)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    clients = [boto3.session.Session().client(service, region_name="us-east-1", endpoint_url=s3_endpoint)
               for service in ("s3", "sns", "sqs")]  # fmt: skip
    s3, sns, sqs = clients
    suffix = uuid.uuid4().hex[:8]
    bucket, queue = f"noaa-goes19-{suffix}", f"ltgcast-{suffix}"
    make_public_bucket(s3, bucket)
    topic = sns.create_topic(Name="NewGOES19Object")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attributes = {"RawMessageDelivery": "true"} if raw else {}
    subscription = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes=attributes)
    try:
        yield Noaa(s3_endpoint, bucket, queue, queue_url, topic, s3, sns, sqs)
    finally:
        sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])
        for client in clients:
            client.close()


@pytest.fixture
def noaa(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Noaa]:
    yield from _noaa(s3_endpoint, monkeypatch, raw=False)


@pytest.fixture
def noaa_raw(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Noaa]:
    yield from _noaa(s3_endpoint, monkeypatch, raw=True)


def source_on(noaa: Noaa, tmp_path: Path, clock: FakeClock | None = None, **options: object) -> SqsSource:
    ctx = SourceContext(cache=tmp_path / "cache", clock=clock or FakeClock(CLOCK_START),
                        frame_filter=FrameFilter(sectors=("M1",)))  # fmt: skip
    source = get_source(noaa.uri(**{"wait_s": 0, **options}), ctx)
    assert isinstance(source, SqsSource)
    return source


def files(meso_scenario: Path) -> tuple[Path, Path]:
    return sorted(meso_scenario.glob("OR_ABI-*.nc"))[0], sorted(meso_scenario.glob("OR_GLM-*.nc"))[0]


def test_lists_fetches_size_checked_and_deletes_only_when_done(noaa: Noaa, meso_scenario: Path, tmp_path: Path) -> None:
    frame, granule = files(meso_scenario)
    frame_key, granule_key = noaa.upload(frame), noaa.upload(granule)
    noaa.notify(frame_key, frame.stat().st_size)
    noaa.notify(granule_key, granule.stat().st_size)
    noaa.notify(frame_key.replace("C13", "C08"), 1234)  # a band the filter does not want
    noaa.notify(f"ABI-L2-ACHAM/2024/167/18/{frame.name.replace('L1b-RadM1-M6C13', 'L2-ACHAM1-M6')}", 99)  # ditto
    noaa.sqs.send_message(QueueUrl=noaa.queue_url, MessageBody="garbage, not JSON")
    noaa.sqs.send_message(QueueUrl=noaa.queue_url, MessageBody=json.dumps({"Event": "s3:TestEvent"}))
    before = refused("not_json"), refused("test_event")
    source = source_on(noaa, tmp_path)

    listed = source.poll()
    assert [(c.name, c.source_uri, c.size) for c in listed] == sorted(
        (p.name, f"s3://{noaa.bucket}/{k}", p.stat().st_size) for p, k in ((frame, frame_key), (granule, granule_key))
    )
    assert (refused("not_json"), refused("test_event")) == (before[0] + 1, before[1] + 1)
    assert noaa.counts() == (0, 2)  # the unwanted and the hostile are deleted; the wanted are in hand, hidden
    assert source.poll() == listed  # not done: listed again, not twice
    for candidate in listed:
        local = source.fetch(candidate)
        assert local.is_relative_to(tmp_path / "cache")
        assert local.read_bytes() == (meso_scenario / candidate.name).read_bytes()
    short = Candidate(frame.name, listed[0].source_uri, frame.stat().st_size + 5)  # the size a forged note claims
    source.objects.retry = Retry(attempts=1)
    with pytest.raises(IngestError, match=r"short download .* listed \d+ bytes, Content-Length \d+, received \d+"):
        source.fetch(short)

    source.done(listed[0])
    assert noaa.counts() == (0, 1)
    assert [c.name for c in source.poll()] == [listed[1].name]
    source.done(listed[1])
    assert noaa.counts() == (0, 0)
    assert source.poll() == []


def test_raw_message_delivery_is_read_too(noaa_raw: Noaa, meso_scenario: Path, tmp_path: Path) -> None:
    frame, _ = files(meso_scenario)
    key = noaa_raw.upload(frame)
    noaa_raw.notify(key, frame.stat().st_size)
    body = noaa_raw.sqs.receive_message(QueueUrl=noaa_raw.queue_url, VisibilityTimeout=0)["Messages"][0]["Body"]
    assert "Records" in json.loads(body)  # no SNS envelope: the S3 event itself
    source = source_on(noaa_raw, tmp_path)
    (candidate,) = source.poll()
    assert candidate.source_uri == f"s3://{noaa_raw.bucket}/{key}"
    source.done(candidate)
    assert noaa_raw.counts() == (0, 0)


def test_other_buckets_and_stray_keys_are_refused_and_deleted(noaa: Noaa, tmp_path: Path) -> None:
    before = refused("wrong_bucket"), refused("bad_key")
    noaa.notify(f"ABI-L1b-RadM/2024/167/18/{FRAME}", 10, bucket="noaa-goes18")
    noaa.notify(f"ABI-L1b-RadM/../../../etc/{FRAME}", 10)
    noaa.notify("ABI-L1b-RadM/2024/167/18/.hidden", 10)
    source = source_on(noaa, tmp_path)
    assert source.poll() == []
    assert (refused("wrong_bucket"), refused("bad_key")) == (before[0] + 1, before[1] + 2)
    assert noaa.counts() == (0, 0)


def test_a_stray_name_in_a_wanted_folder_goes_to_the_daemon_which_refuses_it(noaa: Noaa, tmp_path: Path) -> None:
    noaa.notify("ABI-L1b-RadM/2024/167/18/notes.nc", 10)
    source = source_on(noaa, tmp_path)
    checkpoint = Checkpoint.open(tmp_path / "state")
    try:
        daemon = IngestDaemon(source, InProcessBus(), checkpoint, Quarantine(tmp_path / "q"), source.clock,
                              frame_filter=source.frame_filter)  # fmt: skip
        report = daemon.poll_once()
    finally:
        checkpoint.close()
    assert report.outcomes["quarantined"] == 1
    assert list((tmp_path / "q").rglob("notes.nc.reason.json"))
    assert noaa.counts() == (0, 0)  # refused, recorded, then deleted


def test_the_daemon_announces_each_object_once_and_empties_the_queue(
    noaa: Noaa, meso_scenario: Path, tmp_path: Path
) -> None:
    frame, granule = files(meso_scenario)
    for path in (frame, granule):
        noaa.notify(noaa.upload(path), path.stat().st_size)
    noaa.notify(key_of(frame), frame.stat().st_size)  # NOAA (or SQS) may deliver a notification twice
    source = source_on(noaa, tmp_path)
    bus = InProcessBus()
    checkpoint = Checkpoint.open(tmp_path / "state")
    try:
        daemon = IngestDaemon(source, bus, checkpoint, Quarantine(tmp_path / "q"), source.clock,
                              frame_filter=source.frame_filter, settings=DaemonSettings(isolation=None))  # fmt: skip
        daemon.poll_once()
        noaa.notify(key_of(frame), frame.stat().st_size)  # again, after it was announced
        daemon.poll_once()
    finally:
        checkpoint.close()
    events = [FrameEvent.from_json(m.value) for m in bus.messages(FRAMES_TOPIC) + bus.messages(GLM_TOPIC)]
    assert sorted(e.name for e in events) == sorted([frame.name, granule.name])
    assert noaa.counts() == (0, 0)


class FailingDownloads:
    """An S3Objects stand-in whose downloads fail (a NOAA outage after the notification)."""

    bucket = ""

    def prune_cache(self) -> None:
        pass

    def fetch(self, candidate: Candidate) -> Path:
        msg = f"downloading {candidate.source_uri} failed after at most 4 attempts: Connection refused"
        raise IngestError(msg)


def test_a_file_whose_fetch_fails_stays_in_hand_until_it_is_recorded(noaa: Noaa, tmp_path: Path) -> None:
    noaa.notify(f"ABI-L1b-RadM/2024/167/18/{FRAME}", 10)
    source = source_on(noaa, tmp_path)
    failing = FailingDownloads()
    failing.bucket = noaa.bucket
    source.objects = failing  # type: ignore[assignment]
    checkpoint = Checkpoint.open(tmp_path / "state")
    try:
        settings = DaemonSettings(max_fetch_failures=2)
        daemon = IngestDaemon(source, InProcessBus(), checkpoint, Quarantine(tmp_path / "q"), source.clock,
                              frame_filter=source.frame_filter, settings=settings)  # fmt: skip
        daemon.poll_once()
        assert noaa.counts() == (0, 1)  # not done: kept (and listed again) for the next try
        report = daemon.poll_once()
    finally:
        checkpoint.close()
    assert report.outcomes["deadletter"] == 1
    assert noaa.counts() == (0, 0)


def test_an_unreachable_or_missing_queue_is_an_ingest_error(noaa: Noaa, tmp_path: Path) -> None:
    missing = get_source(noaa.uri().replace(noaa.queue, "no-such-queue"), context(tmp_path))
    with pytest.raises(IngestError, match=r"looking up SQS queue 'no-such-queue': expected the queue to exist"):
        missing.poll()
    port = free_port()  # nothing listens there
    down = get_source(f"sqs://q?bucket=noaa-goes19&endpoint=http://127.0.0.1:{port}&timeout_s=1", context(tmp_path))
    with pytest.raises(IngestError, match=r"looking up SQS queue 'q' failed: Could not connect"):
        down.poll()


@pytest.mark.slow
def test_a_message_not_done_comes_back_after_the_visibility_timeout(noaa: Noaa, tmp_path: Path) -> None:
    noaa.notify(f"ABI-L1b-RadM/2024/167/18/{FRAME}", 10)
    # 5 s: long enough that the restarted source polls within it on a loaded machine (CI), where 1 s was not
    crashed = source_on(noaa, tmp_path, visibility_s=5)
    (held,) = crashed.poll()
    del crashed  # the process died with the file in hand: nothing was deleted
    again = source_on(noaa, tmp_path, visibility_s=5)
    assert again.poll() == []  # still hidden
    back = wait_until(again.poll, "the message visible again after its visibility timeout", 30.0, every_s=0.5)
    assert back == [held]  # at least once
    again.done(held)
    assert noaa.counts() == (0, 0)


@pytest.mark.slow
def test_the_visibility_of_a_held_message_is_extended(noaa: Noaa, tmp_path: Path) -> None:
    noaa.notify(f"ABI-L1b-RadM/2024/167/18/{FRAME}", 10)
    clock = FakeClock(CLOCK_START)
    source = source_on(noaa, tmp_path, clock, visibility_s=2)
    (held,) = source.poll()
    time.sleep(1.2)
    clock.advance(1.2)  # less than half of visibility_s left: the next poll extends it by 2 s
    assert source.poll() == [held]
    time.sleep(1.3)  # 2.5 s after the receive: visible again by now, had it not been extended
    assert "Messages" not in noaa.sqs.receive_message(QueueUrl=noaa.queue_url, WaitTimeSeconds=0)
    source.done(held)
    assert noaa.counts() == (0, 0)


# -- the must-show: a NOAA-shaped notification through the embedded service to a stored grid ------


@pytest.mark.slow
def test_notifications_become_a_stored_grid_and_the_queue_empties(
    noaa: Noaa, meso_scenario: Path, tmp_path: Path
) -> None:
    from foundation.clock import wait_until
    from ltgcast.service import Service, ServiceSettings
    from tests.support.models import DEFAULT_MODELS, served_version

    granules = sorted(meso_scenario.glob("OR_GLM-*.nc"))
    frame = sorted(meso_scenario.glob("OR_ABI-*.nc"))[-1]
    for path in [*granules, frame]:
        noaa.notify(noaa.upload(path), path.stat().st_size)  # through the NewGOES19Object topic
    noaa.sqs.send_message(QueueUrl=noaa.queue_url, MessageBody="<html>503 Service Unavailable</html>")
    garbage = refused("not_json")
    settings = ServiceSettings().replaced(source=noaa.uri(wait_s=1), store=tmp_path / "grids", state=tmp_path / "state",
                                          model_base=DEFAULT_MODELS, http=("127.0.0.1", 0), watch=False,
                                          poll_interval_s=0.2, glm_deadline_s=5.0, max_age_s=0.0)  # fmt: skip
    service = Service(settings).start()
    try:
        newest = wait_until(lambda: service.store.latest("M1"), "the grid of the notified frame", limit_s=120.0)
        wait_until(lambda: noaa.counts() == (0, 0), "an empty queue", limit_s=120.0)
        checkpoint = service.checkpoint
    finally:
        service.stop()

    scan = parse_filename(frame.name).scan_start.replace(microsecond=0)
    assert newest.grid_id == f"G19_M1_{scan:%Y%m%dT%H%M%S}Z_lightning-v{served_version()}"
    assert newest.path.is_file()
    assert service.worker.outcomes["scored"] == 1
    assert service.worker.outcomes["failed"] == 0
    assert checkpoint is not None
    assert {checkpoint.entries[p.name].outcome for p in [*granules, frame]} == {"announced"}
    assert refused("not_json") == garbage + 1
    cached = tmp_path / "state" / "cache" / "ABI-L1b-RadM" / frame.name
    assert cached.read_bytes() == frame.read_bytes()  # the anonymous, size-checked download the grid came from


def test_between_polls_the_long_poll_is_the_wait(noaa: Noaa, tmp_path: Path) -> None:
    clock = FakeClock(CLOCK_START)
    source = source_on(noaa, tmp_path, clock, wait_s=1)  # the URI's default (the tests' source_on uses 0)
    source.wait(2.0)
    assert clock.slept == []  # the next poll waits in ReceiveMessage (wait_s), seeing a notification at once
    still = source_on(noaa, tmp_path, clock, wait_s=0)
    still.wait(2.0)
    assert clock.slept == [2.0]  # no long-poll: the poll interval is slept
