"""The ltgcast exception tree.

Every error ltgcast raises on purpose derives from :class:`LtgcastError`, so a
daemon can count, quarantine and continue on bad data while still crashing on
programming errors::

    LtgcastError
    ├── ConfigError              bad flags, environment or settings file: crash at start-up     (also ValueError)
    ├── IngestError              a source, bus or checkpoint failed
    │   └── RebalancedError      a commit for a partition the group gave to another member
    ├── EventError               a bus message is not a known, valid event                      (also ValueError)
    ├── NotificationError        a queue message that is no S3 object notification              (also ValueError)
    ├── FrameDecodeError         a file is not the GOES-R product it claims to be (stage ``decode``)
    │   ├── FilenameError        a file name does not follow the product grammar (stage ``name``) (also ValueError)
    │   ├── FrameShapeError      declared dimensions outside the product's known shapes (stage ``shape``)
    │   └── FrameEmptyError      too few valid earth pixels to be worth publishing (stage ``empty``)
    ├── FrameFailed              a frame could not become a grid (``transient``: tried again; else dead-lettered)
    ├── ScoringError             the scorer failed (timeouts, transport, shapes)
    │   ├── ScoringUnavailable   the scorer could not be reached or was overloaded: try the frame again later
    │   ├── BadInput             scorer input that is not ``[H, W, C]`` finite values            (also ValueError)
    │   ├── BadOutput            a model answer that is not a finite probability grid          (also ValueError)
    │   └── LabelUnresolved      a version label that REST cannot send
    ├── CircuitOpen              a breaker is open: the call was not made
    ├── RestError                TF Serving's REST API answered an HTTP error (``status``)        (also OSError)
    ├── ArtefactUnavailable      a converted (ONNX) artefact cannot be used (``reason``)          (also ValueError)
    ├── StoreError               the grid store (Redis) failed or holds an undecodable grid
    ├── ApiError                 an HTTP request the API refuses (``status``)
    ├── TrainingError            training diverged or met non-finite input
    └── ModelRejected            a model version failed validation (``serve.scoring.hotswap`` refuses a stage with a
                                 private subclass that names it)

The ``ValueError`` and ``OSError`` bases are kept where callers (and the standard library's own handlers) already
treat such failures as bad values or I/O; a boundary that must tell ltgcast's refusals from programming errors
catches :class:`LtgcastError` (or a branch of it), never a bare ``ValueError``. Every class is defined here, once.

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


class NotificationError(LtgcastError, ValueError):
    """A queue message that is no S3 object notification (or names what this source must not read).

    ``reason`` is one of :data:`ingest.metrics.SQS_REFUSAL_REASONS`; ``detail`` says
    what was expected and what was found.
    """

    def __init__(self, detail: str, *, reason: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class BadInput(ScoringError, ValueError):
    """Scorer input that is not ``[H, W, C]`` finite values (nothing was scored)."""


class BadOutput(ScoringError, ValueError):
    """A model answer that is not a finite ``[h, w]`` probability grid."""


class LabelUnresolved(ScoringError):
    """A version label REST cannot send: only gRPC answers say which version a label reached."""


class CircuitOpen(LtgcastError):
    """A breaker is open: the call was not made."""


class RestError(LtgcastError, OSError):
    """TF Serving's REST API answered with an HTTP error (``status``, and its ``{"error": ...}`` text)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class ArtefactUnavailable(LtgcastError, ValueError):
    """A converted artefact cannot be used; ``reason`` is one of :data:`models.onnx.FALLBACK_REASONS`."""

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason


class ApiError(LtgcastError):
    """A request the API refuses: an HTTP status and a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class FrameFailed(LtgcastError):
    """A frame could not become a grid: ``transient`` failures are tried again, the others dead-lettered."""

    def __init__(self, reason: str, *, transient: bool, kind: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.kind = kind  # what failed: read, score, store
