"""The ltgcast exception tree.

Every error ltgcast raises on purpose derives from :class:`LtgcastError`, so a
daemon can count, quarantine and continue on bad data while still crashing on
programming errors::

    LtgcastError
    ├── ConfigError            bad flags or environment: crash at start-up
    ├── IngestError            a source, bus or checkpoint failed
    │   └── RebalancedError    a commit for a partition the group gave to another member
    ├── EventError             a bus message is not a known, valid event
    ├── FrameDecodeError       a file is not the GOES-R product it claims to be (stage ``decode``)
    │   ├── FilenameError      a file name does not follow the product grammar (stage ``name``)
    │   ├── FrameShapeError    declared dimensions outside the product's known shapes (stage ``shape``)
    │   └── FrameEmptyError    too few valid earth pixels to be worth publishing (stage ``empty``)
    ├── ScoringError           the scorer failed (timeouts, transport, shapes)
    │   └── ScoringUnavailable the scorer could not be reached or was overloaded: try the frame again later
    ├── StoreError             the grid store (Redis) failed or holds an undecodable grid
    ├── TrainingError          training diverged or met non-finite input
    └── ModelRejected          a model version failed validation

Foreign exceptions (``OSError`` from netCDF4, ``KeyError`` for a missing
variable, ``grpc.RpcError``, ``redis.RedisError``, Kafka errors) are translated
into this tree at exactly one boundary each and chained with ``from exc``.
Messages say what was expected and what was found.
"""

from __future__ import annotations

from typing import ClassVar


class LtgcastError(Exception):
    """Base class of every error ltgcast raises on purpose."""


class ConfigError(LtgcastError, ValueError):
    """Configuration is missing or invalid; raised at start-up."""


class IngestError(LtgcastError):
    """A frame source, the bus or the checkpoint failed."""


class RebalancedError(IngestError):
    """A commit was refused: the consumer group moved the partition to another member meanwhile."""


class EventError(LtgcastError, ValueError):
    """A bus message is not valid JSON of a known event schema and version."""


class FrameDecodeError(LtgcastError):
    """A file could not be decoded as the GOES-R product it claims to be.

    ``stage`` names the check that refused the file (the quarantine and dead-letter
    stage): ``decode`` here, narrower in the subclasses.

    Parameters
    ----------
    path
        The offending file.
    reason
        What was expected and what was found (one line).
    """

    stage: ClassVar[str] = "decode"

    def __init__(self, path: str, reason: str) -> None:
        reason = " ".join(reason.splitlines())  # one line, whatever a foreign message held (quarantine, logs)
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class FilenameError(FrameDecodeError, ValueError):
    """A file name does not follow any known GOES-R product grammar."""

    stage: ClassVar[str] = "name"


class FrameShapeError(FrameDecodeError):
    """A file declares dimensions its product cannot have; raised before any array is read."""

    stage: ClassVar[str] = "shape"


class FrameEmptyError(FrameDecodeError):
    """A frame decodes but holds too few valid earth pixels to publish."""

    stage: ClassVar[str] = "empty"


class ScoringError(LtgcastError):
    """The scorer failed to produce probabilities."""


class ScoringUnavailable(ScoringError):
    """The scorer could not answer now (unreachable, timed out, overloaded, breaker open): a transient failure."""


class StoreError(LtgcastError):
    """The grid store failed: the server is unreachable or timed out, or a stored grid does not decode.

    The message names the store's address and the operation that failed.
    """


class TrainingError(LtgcastError):
    """Training stopped: a non-finite loss or input, named with where it happened."""


class ModelRejected(LtgcastError):
    """A model version failed validation and was not swapped in."""
