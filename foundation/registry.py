"""Named implementations of one plugin family: the one lookup every registry of ltgcast uses.

The families: product readers (``ingest.readers``), buses (``ingest.bus``), frame sources
(``ingest.sources``), feature sets (``featurize.channels``), scorer backends (``serve.scoring``) and
the Redis store's grid codecs (``serve.stores.redis_codecs``). An unknown name raises one error, worded one way, listing
the valid names in the order they were registered (:meth:`Registry.lookup`):

>>> colours = Registry("colour", {"red": 1, "green": 2})
>>> colours.lookup("green")
2
>>> colours.lookup("blue")
Traceback (most recent call last):
...
foundation.errors.ConfigError: unknown colour 'blue'; expected one of: red, green
>>> schemes = Registry("bus", {"inproc": 1, "kafka": 2}, shown="{}://")
>>> schemes.lookup("amqp", asked="amqp://x")
Traceback (most recent call last):
...
foundation.errors.ConfigError: unknown bus 'amqp://x'; expected one of: inproc://, kafka://
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TypeVar

from foundation.errors import ConfigError, LtgcastError

T = TypeVar("T")


class Registry(Mapping[str, T]):
    """A read-only name → implementation mapping whose :meth:`lookup` refuses unknown names with the valid ones.

    Parameters
    ----------
    family
        What the names name, for the message ("scorer backend").
    entries
        The implementations, in the order the message lists them.
    shown
        How a name is written in the message: a format (``"{}://"`` for URI schemes) or one text per
        name (``{"dir": "dir:PATH"}``).
    error
        The exception an unknown name raises: :class:`~foundation.errors.ConfigError` (a flag or a
        settings file named it) unless the family is looked up from data.
    """

    def __init__(self, family: str, entries: Mapping[str, T], *, shown: str | Mapping[str, str] = "{}",
                 error: type[LtgcastError] = ConfigError) -> None:  # fmt: skip
        self.family = family
        self._entries = dict(entries)
        self._shown = shown
        self._error = error

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.family!r}, {list(self._entries)})"

    def valid(self) -> str:
        """The registered names as the message lists them."""
        shown = self._shown
        if isinstance(shown, str):
            return ", ".join(shown.format(name) for name in self._entries)
        return ", ".join(shown.get(name, name) for name in self._entries)

    def lookup(self, name: str, *, asked: str | None = None) -> T:
        """The implementation named ``name``; an unknown one raises naming ``asked`` (default ``name``)."""
        try:
            return self._entries[name]
        except KeyError:
            msg = f"unknown {self.family} {asked if asked is not None else name!r}; expected one of: {self.valid()}"
            raise self._error(msg) from None
