"""The ``tfserving`` scorer: a frame's tiles scored by TensorFlow Serving over gRPC, with REST as the fallback.

Modules
-------
* :mod:`serve.scoring.settings` — :class:`~serve.scoring.settings.TFServingSettings` (inside
  :class:`~serve.scoring.settings.ScorerSettings`, one flag each on ``ltgcast run``);
* :mod:`~serve.scoring.tfserving.scorer` — :class:`TFServingScorer`: tiles,
  versions, the fallback and the one error boundary;
* :mod:`~serve.scoring.tfserving.transports` — one tile over gRPC or REST;
* :mod:`~serve.scoring.tfserving.codec` — ``TensorProto`` both ways, answers decoded;
* :mod:`~serve.scoring.tfserving.breaker` — :class:`CircuitBreaker` and its gauge;
* :mod:`~serve.scoring.tfserving.errors` — what is retried, how failures are described and counted.

What it sends
-------------
The frame is cut exactly as :class:`serve.scoring.EmbeddedScorer` cuts it
(:func:`serve.scoring.tile_windows` over the frame ringed with its 32-pixel
halo), so both give the same grid. Each tile is one ``PredictRequest``:

* ``model_spec.name`` — the model (the card's ``name``, or ``settings.model``);
* ``model_spec.version`` — the version folder's number, or
  ``model_spec.version_label`` (``stable``, ``canary``) when ``settings.label``
  is set;
* ``model_spec.signature_name`` — ``serving_default`` (input ``tile`` float32
  ``[1, h + 64, w + 64, C]``), or ``serving_float16`` (the same tile as float16,
  half the bytes) when ``settings.transport`` is ``float16`` and the model
  card's ``"transport"`` list allows it;
* output ``probability`` ``[1, h, w]``, read from ``tensor_content`` or from the
  typed value fields TF Serving fills by default.

Versions
--------
A labelled scorer sends the label with the first tile of each frame, reads the
version that answered from the response's ``model_spec``, and pins the frame's
other tiles to that version, so one grid never mixes two versions and
:attr:`TFServingScorer.version` is the version that produced it. The label is
resolved once when the scorer is built (an unknown label is bad configuration).
TF Serving's REST responses do not say which version answered, so over REST a
labelled scorer asks for the last version gRPC resolved
(``/versions/N``), never for the label. Labels are TF Serving's
``version_labels``, set where its versions are: in the ``models.config`` it reads.

Failures
--------
Every request has a deadline (``timeout_s``). ``UNAVAILABLE``,
``DEADLINE_EXCEEDED`` and ``RESOURCE_EXHAUSTED`` (REST: 503, 504, 429 and
connection failures) are retried with exponential backoff
(:class:`foundation.retry.Retry`: ``retries`` more tries, ``backoff_s`` doubled
up to ``backoff_max_s``); other answers (``NOT_FOUND``, ``INVALID_ARGUMENT``,
``FAILED_PRECONDITION``…) are not, since the same request would get the same
answer. Each transport has a :class:`CircuitBreaker`: after
``breaker_failures`` consecutive retryable failures it opens and calls fail at
once; after ``breaker_cooldown_s`` one trial call goes through (half-open) and
its outcome closes or re-opens it. When gRPC fails with a retryable code, or its
breaker is open, and ``rest`` is set, the tile goes over REST instead. Clock and
sleep are injected.

Metrics
-------
``ltgcast_scorer_errors_total{backend="tfserving", reason}`` counts each
:meth:`TFServingScorer.score` call that raises, once, after the retries and the
REST fallback: per frame, as the worker sees it, not per tile (a frame of 40
tiles with the server down is one error, not 40). The reason is that of the
error the call raised (:func:`~serve.scoring.tfserving.errors.error_reason`: the gRPC code, or the HTTP status
when REST failed last, ``circuit_open``, ``bad_output`` for an answer that does
not decode, has the wrong shape or version, or holds NaN/inf). The reasons are
created at 0 when a scorer is built. ``ltgcast_scorer_circuit_state{backend=
"tfserving", transport="grpc"|"rest"}`` (0 closed, 1 half-open, 2 open) is set
when the scorer is built and whenever a breaker's state changes on a call
(``rest`` only when a REST URL is set). An open breaker turns half-open when
its cool-down ends, but the gauge shows it at the next call, the trial. The
gauge has no role label: it is the state of the one TF Serving scorer a
process builds (``ltgcast run --scorer tfserving`` refuses ``--shadow`` and
model watching, so there is no second one); a process that builds several
shows the last change of any of them.

Errors::

    ValueError     the input is not [H, W, C] finite float32 (nothing is sent)
    ConfigError    settings the model card does not allow (transport), or out of range
    ScoringError   the server or the transport failed (translated from grpc and
                   urllib errors in one place, TFServingScorer._tile, naming model,
                   target and what failed, chained with ``from``); or a label moved
                   to a version whose card (when in the local repository) names
                   another feature set; or the answer is not a finite
                   probability of the tile's shape (cause: ``foundation.errors.BadOutput``)

The gRPC message limit is raised to ``max_message_mb`` both ways (a 512 × 512
float32 tile of two channels with its halo is 2.7 MB; gRPC's default limit is
4 MB).
"""

from serve.scoring.tfserving.breaker import CircuitBreaker
from serve.scoring.tfserving.scorer import TFServingScorer

__all__ = ["CircuitBreaker", "TFServingScorer"]
