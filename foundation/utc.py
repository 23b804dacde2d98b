"""UTC times as ltgcast writes and reads them: ISO 8601 with a ``Z``, millisecond precision, never naive."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(stamp: float | datetime) -> str:
    """ISO 8601 UTC with a ``Z`` suffix, rounded to the millisecond.

    >>> iso_utc(1718474520.99962)
    '2024-06-15T18:02:01.000Z'
    """
    when = stamp if isinstance(stamp, datetime) else datetime.fromtimestamp(round(stamp, 3), tz=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_utc(text: str, *, naive_is_utc: bool = False) -> datetime:
    """Parse ISO 8601 (``Z`` accepted) into an aware UTC datetime; the inverse of :func:`iso_utc`.

    A time without a zone is refused, unless ``naive_is_utc`` (command-line flags) says to read it as UTC.

    >>> parse_utc("2024-06-15T18:02:01.000Z").isoformat()
    '2024-06-15T18:02:01+00:00'
    >>> parse_utc("2024-06-15T20:00+02:00").isoformat()
    '2024-06-15T18:00:00+00:00'
    >>> parse_utc("2024-06-15T18:00", naive_is_utc=True).isoformat()
    '2024-06-15T18:00:00+00:00'
    """
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        if not naive_is_utc:
            msg = f"expected an ISO 8601 time with a zone (…Z), found {text!r}"
            raise ValueError(msg)
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)
