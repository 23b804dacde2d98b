"""The two ways a tile reaches TF Serving: ``PredictionService/Predict`` over gRPC, and REST ``:predict``.

Each transport sends one tile and returns the raw answer (decoded by
:mod:`serve.scoring.tfserving.codec`); it raises the foreign errors as they come
(``grpc.RpcError``; ``OSError``, ``http.client.HTTPException``, and
:class:`~foundation.errors.RestError` for an HTTP error status), which the
scorer retries, falls back on and translates.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol

from numpy.typing import NDArray
from tensorflow_serving.apis import predict_pb2

from foundation.errors import RestError
from serve.scoring.tfserving.codec import tensor_proto


class PredictStub(Protocol):
    """The one call of ``PredictionServiceStub`` the scorer makes (a seam for doubles)."""

    def Predict(self, request: Any, timeout: float | None = None) -> Any:  # gRPC names its methods so
        """Send one ``PredictRequest``; return its ``PredictResponse`` or raise ``grpc.RpcError``."""
        ...


@dataclass(frozen=True)
class Ask:
    """One tile's request: which version (pinned) or label, which signature."""

    tile: NDArray[Any]
    signature: str
    version: int | None
    label: str


def grpc_options(max_message_mb: int) -> list[tuple[str, int]]:
    """The channel options that raise gRPC's message limit (4 MB by default) to ``max_message_mb`` both ways."""
    size = max_message_mb * 2**20
    return [("grpc.max_send_message_length", size), ("grpc.max_receive_message_length", size)]


class GrpcTransport:
    """``Predict`` on one stub, with the request's deadline."""

    def __init__(self, model: str, stub: PredictStub, timeout_s: float) -> None:
        self.model, self.stub, self.timeout_s = model, stub, timeout_s

    def send(self, ask: Ask) -> Any:
        """The ``PredictResponse`` to one tile (the version or, when none is pinned, the label)."""
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model
        request.model_spec.signature_name = ask.signature
        if ask.version is not None:
            request.model_spec.version.value = ask.version
        else:
            request.model_spec.version_label = ask.label
        request.inputs["tile"].CopyFrom(tensor_proto(ask.tile[None]))
        return self.stub.Predict(request, timeout=self.timeout_s)


class RestTransport:
    """``POST /v1/models/NAME/versions/N:predict`` on TF Serving's REST API, columnar JSON."""

    def __init__(self, model: str, url: str, timeout_s: float) -> None:
        self.model, self.url, self.timeout_s = model, url.rstrip("/"), timeout_s

    def send(self, tile: NDArray[Any], signature: str, version: int) -> bytes:
        """The raw JSON answer to one tile; an HTTP error status is a :class:`~foundation.errors.RestError`."""
        url = f"{self.url}/v1/models/{urllib.parse.quote(self.model, safe='')}/versions/{version}:predict"
        body = json.dumps({"signature_name": signature, "inputs": {"tile": tile[None].tolist()}})
        request = urllib.request.Request(
            url, body.encode("utf-8"), headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                data: bytes = reply.read()
        except urllib.error.HTTPError as exc:  # keep TF Serving's {"error": ...} text
            raise RestError(exc.code, _error_text(exc) or str(exc.reason)) from exc
        return data


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        doc = json.loads(exc.read() or b"{}")
    except (OSError, ValueError):
        return ""
    return str(doc.get("error", "")) if isinstance(doc, dict) else ""
