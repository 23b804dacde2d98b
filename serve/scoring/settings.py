"""How frames are scored: :class:`ScorerSettings`, with :class:`TFServingSettings` inside it.

``ScorerSettings`` says which backend scores and how it cuts a frame; ``TFServingSettings`` where TF Serving is and
how the ``tfserving`` backend talks to it.

One tree, each field once, each class checked on construction; light to import (``ltgcast``'s flags take their
defaults from here).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from foundation.errors import ConfigError
from foundation.settings import check_numbers

#: TF Serving's gRPC ``host:port`` when none is given (settings, ``--tfserving``, ``LTGCAST_TFSERVING``).
DEFAULT_TFSERVING = "127.0.0.1:8500"

#: Transport → the dtype of a tile on the wire.
DTYPES: dict[str, np.dtype[Any]] = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16)}


@dataclass(frozen=True)
class TFServingSettings:
    """Where TF Serving is and how the scorer talks to it."""

    target: str = DEFAULT_TFSERVING  # gRPC host:port
    rest: str = ""  # REST base URL for the fallback, e.g. http://127.0.0.1:8501; "" = no fallback
    model: str = ""  # model name on the server; "" = the card's name (the repository folder)
    label: str = ""  # version label; "" = the version folder's number
    transport: str = "float32"  # tile dtype on the wire: float32, or float16 where the card allows it
    timeout_s: float = 10.0  # deadline of one request
    retries: int = 2  # further attempts after a retryable failure
    backoff_s: float = 0.05  # first backoff; doubled after each retry
    backoff_max_s: float = 2.0
    breaker_failures: int = 5  # consecutive retryable failures that open a breaker
    breaker_cooldown_s: float = 30.0  # open → half-open after this long
    max_message_mb: int = 64  # gRPC send and receive limit

    def __post_init__(self) -> None:
        if self.transport not in DTYPES:
            msg = f"TFServingSettings.transport: expected one of {sorted(DTYPES)}, found {self.transport!r}"
            raise ConfigError(msg)
        if self.rest and not _is_http(self.rest):
            msg = f"TFServingSettings.rest: expected an http(s) URL, found {self.rest!r}"
            raise ConfigError(msg)
        check_numbers(self, positive=("timeout_s",), non_negative=("backoff_s", "backoff_max_s", "breaker_cooldown_s"),
                      whole=("retries",), counts=("breaker_failures", "max_message_mb"))  # fmt: skip


@dataclass(frozen=True)
class ScorerSettings:
    """Which backend scores, and how it cuts the frame; ``tfserving`` is read by that backend only."""

    backend: str = "embedded"
    tile: int = 512  # output pixels per tile side; 0 = the whole frame at once (one request on TF Serving)
    threads: int = 0  # in-process threads per tile (TensorFlow intra-op, OpenVINO, ONNX Runtime); 0 = default
    concurrency: int = 4  # tiles in flight at once (in-process threads, or requests to TF Serving)
    tfserving: TFServingSettings = field(default_factory=TFServingSettings)

    def __post_init__(self) -> None:
        # The registry's names, so a bad --scorer or LTGCAST_SCORER stops the start, not the first model load.
        # Imported here: serve.scoring imports this module (and is imported before it all the same, as its package).
        from serve.scoring import BACKENDS

        if self.backend not in BACKENDS:
            msg = (f"ScorerSettings.backend: unknown scorer backend {self.backend!r}; "
                   f"expected one of: {', '.join(BACKENDS)}")  # fmt: skip
            raise ConfigError(msg)
        check_numbers(self, non_negative=("tile", "threads"), counts=("concurrency",))


def _is_http(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
