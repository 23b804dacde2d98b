"""NOAA open-data source (``s3://noaa-goes19``, ``noaa-goes18``, ``noaa-goes16``): anonymous S3.

Key layout, one folder per product and UTC hour::

    ABI-L1b-RadC/2024/167/18/OR_ABI-L1b-RadC-M6C13_G16_s20241671801178_e…_c….nc
    └ product    └ year └ day of year └ hour

Each poll lists the current hour and the ``hours - 1`` before it (default 2: the
current and previous hour, so a file of 12:59 published at 13:00:20 is still
found) for every product folder the :class:`~ingest.sources.FrameFilter` wants.
A missing hour folder is an empty listing, not an error. Outages and slow
listings (connect/read time-outs, 5xx) are retried with exponential back-off;
when retries run out the poll fails with :class:`~foundation.errors.IngestError`.

Downloads stream into ``<cache>/<product>/<name>.part``, are checked against the
listed size and the response's ``Content-Length``, then renamed into place; a
short download is retried and never announced. Cached copies older than
``keep_h`` hours (default 6) are removed, so a consumer has that long to read
the ``uri`` of an event.

Options: ``s3://BUCKET?endpoint=http://127.0.0.1:5000&hours=2&timeout_s=10&keep_h=6&region=us-east-1``
(``endpoint`` points at an S3-compatible server; tests use moto on loopback).

The download half (:class:`S3Objects`: retried, size-checked downloads into the
cache, :meth:`~S3Objects.discard`, pruning) is shared with the notification
source :mod:`ingest.sources.sqs`, which learns of new objects from an SQS queue
instead of listing. botocore exceptions of S3 calls are translated here, and
only here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from foundation.clock import Clock
from foundation.errors import ConfigError, IngestError
from foundation.files import atomic_path
from foundation.retry import Retry
from ingest.sources import Candidate, SourceContext, parse_options

log = logging.getLogger(__name__)
T = TypeVar("T")

_TRANSIENT = (BotoCoreError, IngestError)  # plus the ClientErrors _retryable() lets through


class _RetryableClientError(IngestError):
    """An S3 error response worth retrying (5xx, throttling)."""


def _retryable(call: Callable[[], T]) -> Callable[[], T]:
    """Let 5xx and throttling responses be retried; other S3 errors (403, 404) end the try at once."""

    def wrapped() -> T:
        try:
            return call()
        except ClientError as exc:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if status >= 500 or status == 429 or exc.response.get("Error", {}).get("Code") == "SlowDown":
                raise _RetryableClientError(str(exc)) from exc
            raise

    return wrapped


_CHUNK = 1 << 20


class _ShortDownloadError(IngestError):
    """A download ended before the listed size (retried)."""


def anonymous_client(region: str, endpoint: str | None, timeout_s: float) -> Any:
    """An unsigned S3 client (NOAA's buckets are public): one try per call, the back-off is ours."""
    return boto3.session.Session().client(
        "s3",
        region_name=region,
        endpoint_url=endpoint or None,
        config=Config(
            signature_version=UNSIGNED,
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            retries={"max_attempts": 1, "mode": "standard"},
        ),
    )


class S3Objects:
    """Anonymous, retried, size-checked downloads from one bucket into ``cache/<product>/<name>``.

    ``candidate.source_uri`` is ``s3://<bucket>/<product>/…/<name>``: the first key
    segment names the cache folder. Shared by :class:`NoaaS3Source` and
    :class:`ingest.sources.sqs.SqsSource`.
    """

    def __init__(
        self,
        bucket: str,
        cache: Path,
        clock: Clock,
        *,
        client: Any,
        keep_h: float = 6.0,
        retry: Retry | None = None,
    ) -> None:
        self.bucket = bucket
        self.cache = cache
        self.clock = clock
        self.client = client
        self.keep_h = keep_h
        self.retry = retry or Retry()
        self._last_prune = float("-inf")

    def _retried(self, call: Callable[[], T], what: str) -> T:
        """``call`` with back-off on transient failures; what still fails becomes :class:`IngestError`."""
        try:
            return self.retry.call(_retryable(call), self.clock, transient=_TRANSIENT, what=what)
        except (*_TRANSIENT, ClientError) as exc:
            msg = f"{what} failed after at most {self.retry.attempts} attempts: {exc}"
            raise IngestError(msg) from exc

    def _download(self, candidate: Candidate, target: Path) -> None:
        key = candidate.source_uri.split("/", 3)[3]
        response = self.client.get_object(Bucket=self.bucket, Key=key)
        declared = int(response.get("ContentLength", -1))
        written = 0
        # not durable: a download lost in a crash is fetched again (the checkpoint has not recorded it)
        with atomic_path(target, durable=False) as partial:
            with partial.open("wb") as out:
                for chunk in response["Body"].iter_chunks(_CHUNK):
                    out.write(chunk)
                    written += len(chunk)
            if not written == declared == candidate.size:
                msg = (
                    f"short download of {candidate.source_uri}: listed {candidate.size} bytes, "
                    f"Content-Length {declared}, received {written}"
                )
                raise _ShortDownloadError(msg)

    def fetch(self, candidate: Candidate) -> Path:
        """Download into the cache (or reuse a complete cached copy) and check the size."""
        product = candidate.source_uri.split("/", 4)[3]
        target = self.cache / product / candidate.name
        try:
            if target.is_file() and target.stat().st_size == candidate.size:
                return target
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot use the cache {target.parent} for {candidate.source_uri}: {exc}"
            raise IngestError(msg) from exc
        try:
            self._retried(partial(self._download, candidate, target), f"downloading {candidate.source_uri}")
        except OSError as exc:
            msg = f"cannot write {target} while downloading {candidate.source_uri}: {exc}"
            raise IngestError(msg) from exc
        return target

    def discard(self, candidate: Candidate, local: Path) -> None:
        """Remove the cached copy (the bucket itself is read-only)."""
        local.unlink(missing_ok=True)

    def prune_cache(self) -> None:
        """Delete cached copies older than ``keep_h`` (checked at most every 10 minutes)."""
        now = self.clock.monotonic()
        if now - self._last_prune < 600 or not self.cache.is_dir():
            return
        self._last_prune = now
        horizon = self.clock.now().timestamp() - self.keep_h * 3600
        for path in self.cache.glob("*/*"):
            try:
                if path.stat().st_mtime < horizon:
                    path.unlink()
            except OSError as exc:
                log.warning("cannot prune cached %s: %s", path, exc)


class NoaaS3Source(S3Objects):
    """A :class:`~ingest.sources.FrameSource` over NOAA's GOES-R buckets, by listing hour folders."""

    def __init__(
        self,
        bucket: str,
        products: list[str],
        cache: Path,
        clock: Clock,
        *,
        client: Any,
        hours: int = 2,
        keep_h: float = 6.0,
        retry: Retry | None = None,
    ) -> None:
        super().__init__(bucket, cache, clock, client=client, keep_h=keep_h, retry=retry)
        self.products = products
        self.hours = hours

    @classmethod
    def from_uri(cls, uri: str, context: SourceContext) -> NoaaS3Source:
        """``s3://BUCKET[?endpoint=URL&hours=N&timeout_s=S&keep_h=H&region=R]``."""
        parts = urlsplit(uri)
        if not parts.netloc or parts.path not in ("", "/"):
            msg = f"expected s3://BUCKET[?options], found {uri!r}"
            raise ConfigError(msg)
        options = parse_options(parts.query, ("endpoint", "hours", "timeout_s", "keep_h", "region"), uri)
        try:
            hours, timeout_s = int(options.get("hours", "2")), float(options.get("timeout_s", "10"))
            keep_h = float(options.get("keep_h", "6"))
        except ValueError as exc:
            msg = f"bad number in source options of {uri!r}: {exc}"
            raise ConfigError(msg) from exc
        if hours < 1:
            msg = f"hours: expected >= 1 (current hour included), found {hours}"
            raise ConfigError(msg)
        client = anonymous_client(options.get("region", "us-east-1"), options.get("endpoint"), timeout_s)
        products = context.frame_filter.products()
        return cls(parts.netloc, products, context.cache, context.clock, client=client, hours=hours, keep_h=keep_h)

    def list_prefix(self, prefix: str) -> list[Candidate]:
        """Every object under one ``<product>/<YYYY>/<DOY>/<HH>/`` folder, with retries."""
        return self._retried(partial(self._list, prefix), f"listing s3://{self.bucket}/{prefix}")

    def prefixes(self) -> list[str]:
        """The product/hour folders a poll lists now, oldest hour first."""
        now = self.clock.now()
        hours = [now - timedelta(hours=h) for h in range(self.hours - 1, -1, -1)]
        return [f"{product}/{t:%Y/%j/%H}/" for product in self.products for t in hours]

    def _list(self, prefix: str) -> list[Candidate]:
        found = []
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                key = item["Key"]
                found.append(Candidate(key.rsplit("/", 1)[-1], f"s3://{self.bucket}/{key}", int(item["Size"])))
        return found

    def poll(self) -> list[Candidate]:
        """Every object under the current and previous hour folders of each product."""
        self.prune_cache()
        found: list[Candidate] = []
        for prefix in self.prefixes():
            found.extend(self.list_prefix(prefix))
        return sorted(found, key=lambda c: (c.name, c.source_uri))

    def pending(self) -> int:
        """S3 objects appear whole: nothing is ever half-listed."""
        return 0
