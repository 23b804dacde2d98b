"""Event-driven NOAA source (``sqs://QUEUE``): new-object notifications from the user's SQS queue.

NOAA publishes an SNS notification for every new object in its GOES-R buckets
(topics ``arn:aws:sns:us-east-1:123901341784:NewGOES19Object``, ``NewGOES18Object``,
``NewGOES16Object``). A user subscribes an SQS queue of their own to the topic; this
source long-polls that queue, so a file is seen as soon as NOAA stores it instead
of at the next listing of an hour folder (:mod:`ingest.sources.noaa_s3`, which
stays the default source: it needs no account).

URI::

    sqs://QUEUE_NAME[?bucket=noaa-goes19&region=us-east-1&endpoint=URL&wait_s=1
                     &visibility_s=120&max_messages=100&timeout_s=10&keep_h=6]

* ``QUEUE_NAME`` is the queue's name in ``region`` (default ``us-east-1``); its URL
  is looked up at the first poll. Reading the queue uses boto3's normal credential
  chain (environment, profile, instance role); the downloads stay anonymous,
  from the bucket's ``us-east-1``.
* ``bucket`` is the only bucket notifications may name (default: derived from a
  single ``--satellite``, G19 → ``noaa-goes19``; a start-up error otherwise).
* ``endpoint`` points both the SQS and the S3 calls at one compatible server
  (tests use moto on loopback).
* ``wait_s`` (0–20, default 1) is the ``ReceiveMessage`` long-poll wait of each
  poll; ``max_messages`` (default 100) caps the messages taken per poll.
* ``visibility_s`` (default 120) is how long a received message stays hidden from
  other receives; ``timeout_s`` and ``keep_h`` are as for ``s3://``.

Message bodies
--------------
A body is either an SNS envelope (``{"Type": "Notification", "MessageId", "TopicArn",
"Message": "<JSON string>", "Timestamp", …}``, the default delivery) or, with raw
message delivery, the S3 event notification itself: ``{"Records": [{"eventSource":
"aws:s3", "eventName": "ObjectCreated:Put", "eventTime", "s3": {"bucket": {"name"},
"object": {"key", "size", …}}}, …]}``. Keys are URL-encoded (``+`` is a space) and
are decoded here (:func:`parse_body`). Records of other events (``ObjectRemoved:*``)
are ignored.

Delivery: at least once
-----------------------
A message is never deleted on receipt. Each wanted object it names is listed by
:meth:`SqsSource.poll` until the daemon calls :meth:`SqsSource.done` for it (after
the checkpoint recorded the outcome, or when the file was already recorded or
filtered out); the message is deleted once every object it names is done. While a
message is in hand its visibility is extended (``ChangeMessageVisibility``, at each
poll and before each download, whenever less than half of ``visibility_s`` is
left); a process that dies leaves its messages to reappear after ``visibility_s``,
and the checkpoint drops what was already recorded. A message received again
(its visibility ran out) replaces the receipt handle kept for it. A failed delete
or extension is logged, not raised: the message comes back and is dropped as
already recorded. One daemon reads one queue.

Deleted at once, without reaching the daemon:

* a notification whose objects are not wanted by the
  :class:`~ingest.sources.FrameFilter` (another product folder, band or sector;
  a GOES-R product without a reader here), or names no created object;
* hostile input — a body that is not JSON, not an S3 object notification, an
  ``s3:TestEvent``, a record naming another bucket than ``bucket``, or a key
  outside NOAA's ``<product>/<YYYY>/<DOY>/<HH>/<name>`` layout: counted in
  ``ltgcast_ingest_sqs_messages_refused_total{reason}``
  (:data:`ingest.metrics.SQS_REFUSAL_REASONS`) and logged as an error naming what
  was expected and what was found. A message with one bad record is refused whole.

A key of the layout whose name is not a GOES-R name is handed over, and the
daemon refuses it (stage ``name``), as with ``s3://``.

botocore exceptions of the queue calls are translated into
:class:`~foundation.errors.IngestError` in :meth:`SqsSource._aws`, and only there
(the daemon backs off and polls again); downloads go through
:class:`~ingest.sources.noaa_s3.S3Objects`.
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote_plus, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from foundation.clock import Clock
from foundation.errors import ConfigError, FilenameError, IngestError, NotificationError
from ingest import metrics
from ingest.filenames import is_goes_product_name, parse_filename
from ingest.sources import Candidate, FrameFilter, SourceContext, parse_options
from ingest.sources.noaa_s3 import S3Objects, anonymous_client

log = logging.getLogger(__name__)
T = TypeVar("T")

_OPTIONS = ("bucket", "region", "endpoint", "wait_s", "visibility_s", "max_messages", "timeout_s", "keep_h")
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}|[A-Za-z0-9_-]{1,75}\.fifo")
_SATELLITE = re.compile(r"G(\d\d)")
#: NOAA's key layout; the name is handed to the daemon (which parses it), never to the file system unchecked.
_KEY = re.compile(r"(?P<product>[A-Za-z0-9][A-Za-z0-9-]*)/\d{4}/\d{3}/\d{2}/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)")
_PREVIEW = 120
_NO_QUEUE = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


# -- message bodies -----------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectCreated:
    """One ``ObjectCreated:*`` record of an S3 event notification; ``key`` is URL-decoded."""

    bucket: str
    key: str
    size: int
    event_name: str
    event_time: str


def _preview(text: str) -> str:
    return repr(text[:_PREVIEW] + ("…" if len(text) > _PREVIEW else ""))


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: a hostile body nested thousands deep
        msg = f"expected the {what} to be JSON, found {_preview(text)} ({type(exc).__name__})"
        raise NotificationError(msg, reason="not_json") from None


def _unwrap(envelope: dict[str, Any]) -> Any:
    """The S3 event inside an SNS ``Notification`` envelope."""
    kind, message = envelope.get("Type"), envelope.get("Message")
    if kind != "Notification":
        topic = envelope.get("TopicArn")
        msg = f"expected an SNS message of Type 'Notification', found Type {kind!r} (TopicArn {topic!r})"
        raise NotificationError(msg, reason="not_s3_event")
    if not isinstance(message, str):
        msg = f"expected the SNS Message to be a JSON string, found {type(message).__name__}"
        raise NotificationError(msg, reason="not_s3_event")
    return _json(message, "SNS Message")


def _get(node: Any, path: tuple[str, ...], where: str) -> Any:
    for step in path:
        if not isinstance(node, dict) or step not in node:
            msg = f"expected {where}.{'.'.join(path)}, found no {step!r} in {_preview(json.dumps(node))}"
            raise NotificationError(msg, reason="not_s3_event")
        node = node[step]
    return node


def _record(index: int, record: Any) -> ObjectCreated | None:
    """One record, or ``None`` for an event other than ``ObjectCreated:*``."""
    where = f"Records[{index}]"
    source, event = _get(record, ("eventSource",), where), _get(record, ("eventName",), where)
    if source != "aws:s3" or not isinstance(event, str):
        msg = f"expected {where} from eventSource 'aws:s3' with an eventName, found {source!r} and {event!r}"
        raise NotificationError(msg, reason="not_s3_event")
    if not event.startswith("ObjectCreated:"):
        return None
    bucket, key = _get(record, ("s3", "bucket", "name"), where), _get(record, ("s3", "object", "key"), where)
    size = _get(record, ("s3", "object", "size"), where)
    if not isinstance(bucket, str) or not isinstance(key, str) or not bucket or not key:
        msg = f"expected {where}.s3 to name a bucket and a key (strings), found {bucket!r} and {key!r}"
        raise NotificationError(msg, reason="not_s3_event")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        msg = f"expected {where}.s3.object.size to be a byte count (integer >= 0), found {size!r}"
        raise NotificationError(msg, reason="not_s3_event")
    when = record.get("eventTime")
    return ObjectCreated(bucket, unquote_plus(key), size, event, when if isinstance(when, str) else "")


def _records(event: Any) -> list[ObjectCreated]:
    if not isinstance(event, dict):
        msg = f"expected an S3 event notification (a JSON object with Records), found a JSON {type(event).__name__}"
        raise NotificationError(msg, reason="not_s3_event")
    if event.get("Event") == "s3:TestEvent":
        msg = (
            "expected an S3 object notification, found an s3:TestEvent "
            f"(bucket {event.get('Bucket')!r}, sent when a bucket notification is configured)"
        )
        raise NotificationError(msg, reason="test_event")
    records = event.get("Records")
    if not isinstance(records, list) or not records:
        msg = f"expected Records, a non-empty list, in the S3 event notification, found {_preview(json.dumps(event))}"
        raise NotificationError(msg, reason="not_s3_event")
    found = (_record(i, record) for i, record in enumerate(records))
    return [note for note in found if note is not None]


def parse_body(body: str) -> list[ObjectCreated]:
    """The created objects a queue message names, SNS-enveloped or raw; hostile bodies raise.

    Raises
    ------
    NotificationError
        The body is not JSON, not an S3 object notification, or an ``s3:TestEvent``.

    Examples
    --------
    >>> event = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
    ...     "eventTime": "2024-06-15T18:02:01.350Z", "s3": {"bucket": {"name": "noaa-goes19"},
    ...     "object": {"key": "GLM-L2-LCFA/2024/167/18/OR_GLM+%28copy%29.nc", "size": 4096}}}]}
    >>> envelope = {"Type": "Notification", "MessageId": "5f3c…", "Message": json.dumps(event),
    ...     "TopicArn": "arn:aws:sns:us-east-1:123901341784:NewGOES19Object"}
    >>> parse_body(json.dumps(envelope)) == parse_body(json.dumps(event))  # raw message delivery
    True
    >>> parse_body(json.dumps(event))[0].key
    'GLM-L2-LCFA/2024/167/18/OR_GLM (copy).nc'
    >>> parse_body('{"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "noaa-goes19"}')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    foundation.errors.NotificationError: test_event: expected an S3 object notification, found an s3:TestEvent ...
    """
    document = _json(body, "message body")
    if isinstance(document, dict) and "Type" in document:  # the SNS envelope (raw delivery has none)
        document = _unwrap(document)
    return _records(document)


# -- the source ---------------------------------------------------------------------------


@dataclass
class _Held:
    """A received message not deleted yet: its newest receipt handle and the objects not done yet."""

    receipt: str
    waiting: set[str]
    deadline: float  # clock.monotonic() when its visibility runs out


def bucket_of(options: dict[str, str], frame_filter: FrameFilter, uri: str) -> str:
    """The ``bucket`` option, or NOAA's bucket of the filter's one satellite."""
    if options.get("bucket"):
        return options["bucket"]
    satellites = [m for s in frame_filter.satellites if (m := _SATELLITE.fullmatch(s))]
    if len(frame_filter.satellites) == 1 and satellites:
        return f"noaa-goes{satellites[0][1]}"
    msg = (
        f"source {uri!r}: expected ?bucket=noaa-goes19 (or noaa-goes18, noaa-goes16) or a single --satellite "
        f"to derive it from, found satellites {list(frame_filter.satellites) or 'any'}"
    )
    raise ConfigError(msg)


def _numbers(options: dict[str, str], uri: str) -> tuple[int, int, int, float, float]:
    try:
        wait_s, visibility_s = int(options.get("wait_s", "1")), int(options.get("visibility_s", "120"))
        max_messages, timeout_s = int(options.get("max_messages", "100")), float(options.get("timeout_s", "10"))
        keep_h = float(options.get("keep_h", "6"))
    except ValueError as exc:
        msg = f"bad number in source options of {uri!r}: {exc}"
        raise ConfigError(msg) from exc
    if not (0 <= wait_s <= 20 and 1 <= visibility_s <= 43200 and max_messages >= 1 and timeout_s > 0 and keep_h > 0):
        msg = (
            f"source {uri!r}: expected wait_s in 0..20, visibility_s in 1..43200, max_messages >= 1, timeout_s > 0 "
            f"and keep_h > 0, found {wait_s}, {visibility_s}, {max_messages}, {timeout_s:g} and {keep_h:g}"
        )
        raise ConfigError(msg)
    return wait_s, visibility_s, max_messages, timeout_s, keep_h


class SqsSource:
    """A :class:`~ingest.sources.FrameSource` fed by S3 new-object notifications from an SQS queue."""

    def __init__(
        self,
        queue: str,
        objects: S3Objects,
        clock: Clock,
        *,
        client: Any,
        frame_filter: FrameFilter,
        wait_s: int = 1,
        visibility_s: int = 120,
        max_messages: int = 100,
    ) -> None:
        self.queue = queue
        self.objects = objects
        self.clock = clock
        self.client = client
        self.frame_filter = frame_filter
        self.products = set(frame_filter.products())
        self.wait_s = wait_s
        self.visibility_s = visibility_s
        self.max_messages = max_messages
        self._url: str | None = None
        self._held: dict[str, _Held] = {}  # by MessageId
        self._candidates: dict[str, Candidate] = {}  # by source_uri
        self._naming: defaultdict[str, set[str]] = defaultdict(set)  # source_uri -> MessageIds naming it

    @classmethod
    def from_uri(cls, uri: str, context: SourceContext) -> SqsSource:
        """``sqs://QUEUE_NAME[?options]`` (see the module docstring)."""
        parts = urlsplit(uri)
        if not _QUEUE_NAME.fullmatch(parts.netloc) or parts.path not in ("", "/"):
            msg = f"expected sqs://QUEUE_NAME[?options] (1-80 letters, digits, - or _), found {uri!r}"
            raise ConfigError(msg)
        options = parse_options(parts.query, _OPTIONS, uri)
        wait_s, visibility_s, max_messages, timeout_s, keep_h = _numbers(options, uri)
        bucket, endpoint = bucket_of(options, context.frame_filter, uri), options.get("endpoint") or None
        client = boto3.session.Session().client(  # signed: the user's credentials, by boto3's usual chain
            "sqs",
            region_name=options.get("region", "us-east-1"),
            endpoint_url=endpoint,
            config=Config(connect_timeout=timeout_s, read_timeout=timeout_s + wait_s, retries={"max_attempts": 2}),
        )
        s3 = anonymous_client("us-east-1", endpoint, timeout_s)  # NOAA's buckets are public, in us-east-1
        objects = S3Objects(bucket, context.cache, context.clock, client=s3, keep_h=keep_h)
        return cls(parts.netloc, objects, context.clock, client=client, frame_filter=context.frame_filter,
                   wait_s=wait_s, visibility_s=visibility_s, max_messages=max_messages)  # fmt: skip

    # -- the one boundary of botocore exceptions (queue calls) ---------------------------

    def _aws(self, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _NO_QUEUE:
                msg = (
                    f"{what} SQS queue {self.queue!r}: expected the queue to exist (subscribed to NOAA's "
                    f"NewGOES<NN>Object topic), found none: {exc}"
                )
                raise IngestError(msg) from exc
            msg = f"{what} SQS queue {self.queue!r} failed: {exc}"
            raise IngestError(msg) from exc
        except BotoCoreError as exc:
            msg = f"{what} SQS queue {self.queue!r} failed: {exc}"
            raise IngestError(msg) from exc

    def queue_url(self) -> str:
        """The queue's URL, looked up once."""
        if self._url is None:
            reply = self._aws("looking up", lambda: self.client.get_queue_url(QueueName=self.queue))
            self._url = str(reply["QueueUrl"])
        return self._url

    # -- the FrameSource contract --------------------------------------------------------

    def poll(self) -> list[Candidate]:
        """Take new notifications, then list every wanted object not done yet."""
        self.objects.prune_cache()
        self._keep_alive()
        doomed: list[str] = []
        for message in self._receive():
            self._take(message, doomed)
        self._delete(doomed)
        return sorted(self._candidates.values(), key=lambda c: (c.name, c.source_uri))

    def pending(self) -> int:
        """Notifications name whole objects: nothing is ever half-listed."""
        return 0

    def fetch(self, candidate: Candidate) -> Path:
        """A size-checked download into the cache (its message kept hidden meanwhile)."""
        self._keep_alive()
        return self.objects.fetch(candidate)

    def discard(self, candidate: Candidate, local: Path) -> None:
        """Remove the cached copy (the bucket itself is read-only)."""
        self.objects.discard(candidate, local)

    def wait(self, seconds: float) -> None:
        """Between polls: nothing while the next poll's long-poll (``wait_s``) is the wait, else ``seconds``.

        So a notification is seen within ``wait_s`` of its arrival, not after the daemon's poll interval.
        """
        if self.wait_s <= 0 or self._held:  # no long-poll, or files in hand the daemon is still retrying
            self.clock.sleep(seconds)

    def done(self, candidate: Candidate) -> None:
        """The daemon is finished with ``candidate``: delete each message once all it names are done."""
        self._candidates.pop(candidate.source_uri, None)
        receipts = []
        for message_id in self._naming.pop(candidate.source_uri, set()):
            held = self._held.get(message_id)
            if held is None:
                continue
            held.waiting.discard(candidate.source_uri)
            if not held.waiting:
                del self._held[message_id]
                receipts.append(held.receipt)
        self._delete(receipts)

    # -- messages ------------------------------------------------------------------------

    def _receive(self) -> list[dict[str, Any]]:
        """Up to ``max_messages``: one long poll of ``wait_s``, then what is there at once."""
        messages: list[dict[str, Any]] = []
        wait = self.wait_s
        while len(messages) < self.max_messages:
            receive = partial(self.client.receive_message, QueueUrl=self.queue_url(), WaitTimeSeconds=wait,
                              MaxNumberOfMessages=min(10, self.max_messages - len(messages)),
                              VisibilityTimeout=self.visibility_s)  # fmt: skip
            reply = self._aws("receiving from", receive)
            batch = reply.get("Messages", [])
            messages.extend(batch)
            if not batch:
                break
            wait = 0
        return messages

    def _take(self, message: dict[str, Any], doomed: list[str]) -> None:
        """Hold a message naming wanted objects; add the receipt of any other message to ``doomed``."""
        message_id, receipt = str(message.get("MessageId")), str(message.get("ReceiptHandle"))
        deadline = self.clock.monotonic() + self.visibility_s
        held = self._held.get(message_id)
        if held is not None:  # its visibility ran out while in hand: only the newest receipt handle deletes it
            held.receipt, held.deadline = receipt, deadline
            return
        try:
            wanted = self._wanted(parse_body(str(message.get("Body", ""))))
        except NotificationError as exc:
            metrics.SQS_MESSAGES_REFUSED.labels(reason=exc.reason).inc()
            log.error("refused message %s of SQS queue %s (deleted): %s", message_id, self.queue, exc)
            doomed.append(receipt)
            return
        if not wanted:
            doomed.append(receipt)
            return
        self._held[message_id] = _Held(receipt, {c.source_uri for c in wanted}, deadline)
        for candidate in wanted:
            self._candidates[candidate.source_uri] = candidate
            self._naming[candidate.source_uri].add(message_id)

    def _wanted(self, notes: Iterable[ObjectCreated]) -> list[Candidate]:
        """The candidates the filter wants; a note of another bucket or a stray key refuses the whole message."""
        wanted = []
        for note in notes:
            if note.bucket != self.objects.bucket:
                msg = f"expected objects of bucket {self.objects.bucket!r}, found {_preview(f's3://{note.bucket}/{note.key}')}"
                raise NotificationError(msg, reason="wrong_bucket")
            match = _KEY.fullmatch(note.key)
            if match is None:
                msg = f"expected a key <product>/<YYYY>/<DOY>/<HH>/<name>, found {_preview(note.key)}"
                raise NotificationError(msg, reason="bad_key")
            if self._accepts(match["product"], match["name"]):
                wanted.append(Candidate(match["name"], f"s3://{note.bucket}/{note.key}", note.size))
            else:
                log.debug("not wanted: s3://%s/%s", note.bucket, note.key)
        return wanted

    def _accepts(self, product: str, name: str) -> bool:
        if product not in self.products:
            return False
        try:
            return self.frame_filter.accepts(parse_filename(name))
        except FilenameError:  # a product without a reader here is not ours; a stray name the daemon refuses
            return not is_goes_product_name(name)

    def _keep_alive(self) -> None:
        """Extend the visibility of held messages with less than half of ``visibility_s`` left."""
        now = self.clock.monotonic()
        due = [held for held in self._held.values() if held.deadline - now < self.visibility_s / 2]
        for start in range(0, len(due), 10):
            chunk = due[start : start + 10]
            entries = [{"Id": str(i), "ReceiptHandle": h.receipt, "VisibilityTimeout": self.visibility_s}
                       for i, h in enumerate(chunk)]  # fmt: skip
            failed = self._batch("extending the visibility in", self.client.change_message_visibility_batch, entries)
            for i, held in enumerate(chunk):
                if str(i) not in failed:
                    held.deadline = now + self.visibility_s

    def _delete(self, receipts: list[str]) -> None:
        for start in range(0, len(receipts), 10):
            entries = [{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(receipts[start : start + 10])]
            self._batch("deleting from", self.client.delete_message_batch, entries)

    def _batch(self, what: str, call: Callable[..., Any], entries: list[dict[str, Any]]) -> set[str]:
        """The Ids of ``entries`` that failed; failures are logged, never raised (the message comes back)."""
        try:
            reply = self._aws(what, lambda: call(QueueUrl=self.queue_url(), Entries=entries))
        except IngestError as exc:
            log.warning("%s; the messages will be received again", exc)
            return {entry["Id"] for entry in entries}
        failed = {str(f.get("Id")): f for f in reply.get("Failed", [])}
        for failure in failed.values():
            log.warning("%s SQS queue %s: entry failed (%s: %s); it will be received again", what, self.queue,
                        failure.get("Code"), failure.get("Message"))  # fmt: skip
        return set(failed)
