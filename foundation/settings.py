"""Checks every settings dataclass runs in ``__post_init__``: a value out of range is refused naming the field.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class PollSettings:
...     interval_s: float = 2.0
...     tries: int = 3
...     def __post_init__(self) -> None:
...         check_numbers(self, positive=("interval_s",), counts=("tries",))
>>> PollSettings(interval_s=float("nan"))
Traceback (most recent call last):
...
foundation.errors.ConfigError: PollSettings.interval_s: expected a number > 0, found nan
>>> PollSettings(interval_s=float("inf"))
Traceback (most recent call last):
...
foundation.errors.ConfigError: PollSettings.interval_s: expected a number > 0, found inf
>>> PollSettings(tries=0)
Traceback (most recent call last):
...
foundation.errors.ConfigError: PollSettings.tries: expected an integer >= 1, found 0
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from foundation.errors import ConfigError


def check_numbers(
    settings: object,
    *,
    positive: Iterable[str] = (),
    non_negative: Iterable[str] = (),
    counts: Iterable[str] = (),
    whole: Iterable[str] = (),
) -> None:
    """:class:`ConfigError` for the first field of ``settings`` out of its range (NaN and infinity never are).

    ``positive``: finite numbers > 0; ``non_negative``: finite numbers >= 0 (0 often means "off" or "no limit");
    ``counts``: integers >= 1; ``whole``: integers >= 0.
    """
    owner = type(settings).__name__
    rules = [(name, "a number > 0", _positive) for name in positive]
    rules += [(name, "a number >= 0", _non_negative) for name in non_negative]
    rules += [(name, "an integer >= 1", _count) for name in counts]
    rules += [(name, "an integer >= 0", _whole) for name in whole]
    for name, expected, holds in rules:
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not holds(value):
            msg = f"{owner}.{name}: expected {expected}, found {value!r}"
            raise ConfigError(msg)


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _non_negative(value: float) -> bool:
    return math.isfinite(value) and value >= 0


def _count(value: float) -> bool:
    return value >= 1 and float(value).is_integer()


def _whole(value: float) -> bool:
    return value >= 0 and float(value).is_integer()
