"""A TensorFlow Serving stand-in, for tests and laptops only: production runs the ``tensorflow/serving`` image.

TF Serving's binary cannot be installed on these machines (docs/architecture.md), so
the ``tfserving`` scorer's protocol is tested against this server: the real
``tensorflow-serving-api`` gRPC services and TF Serving's REST API, answered by
the SavedModel versions of a model repository (``BASE/<name>/<version>/``)
loaded with TensorFlow in this process.

Served
------
gRPC (one port)
    ``PredictionService/Predict``; ``ModelService/GetModelStatus`` and
    ``HandleReloadConfigRequest``. Other methods answer ``UNIMPLEMENTED``.
REST (another port)
    ``POST /v1/models/NAME[/versions/N | /labels/L]:predict`` with
    ``{"signature_name", "inputs"}`` (columnar, answered ``{"outputs": ...}``)
    or ``{"instances"}`` (rows, answered ``{"predictions": ...}``);
    ``GET /v1/models/NAME[/versions/N]`` (model status). Errors are
    ``{"error": "..."}`` with TF Serving's status → HTTP mapping.

What it copies from TF Serving (``tensorflow_serving/model_servers``, ``servables/tensorflow``)
-------------------------------------------------------------------------------------------
* Config: ``BASE/models.config`` (a ``ModelServerConfig`` text proto, as
  ``--model_config_file``), ``base_path`` under ``serving_root`` (``/models``)
  read from ``BASE`` as the image's mount; without ``models.config``, every
  model of ``BASE`` at its ``serving.json`` current version. Version policies
  ``latest`` (``num_versions``), ``all`` and ``specific``. A reload replaces the
  whole model list. Duplicate names, relative base paths and a platform other
  than ``tensorflow`` are ``INVALID_ARGUMENT``.
* Labels: ``version_labels`` may only name a version that is ``AVAILABLE``
  *before* the reload (``FAILED_PRECONDITION``), so a new version needs one
  reload to load it and a second to label it, as with TF Serving's default
  ``--allow_version_labels_for_unavailable_models=false``.
* ``model_spec``: no name → ``INVALID_ARGUMENT``; ``version`` → that version;
  ``version_label`` → the label's version, an unknown label is
  ``INVALID_ARGUMENT`` ("Unrecognized servable version label"); neither → the
  latest loaded; a version not loaded is ``NOT_FOUND`` ("Servable not found for
  request: Specific(name, v)").
* Predict: signature ``signature_name`` or ``serving_default`` (unknown →
  ``FAILED_PRECONDITION``); input names, count, dtype and shape checked
  (``INVALID_ARGUMENT``); errors inside the graph keep TensorFlow's code; the
  response carries ``model_spec`` (name, version, signature) and the outputs as
  typed value fields (``float_val``), as ``RunPredict`` writes them by default.
* Loading replays ``assets.extra/tf_serving_warmup_requests``; a failing
  warm-up fails the load. GetModelStatus lists unloaded versions as ``END``.
* The gRPC message limit is lifted (TF Serving sets it to INT32_MAX).

Not copied: batching, polling the file system for new versions (reload the
config instead), asynchronous loading (loads finish inside the reload call),
GetModelMetadata, Classify, Regress, MultiInference, metrics and monitoring.

Run it: ``python -m tests.support.tfs_standin --base models/repository --grpc-port 8500 --rest-port 8501``.
"""

from __future__ import annotations

import argparse
import http.server
import json
import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import grpc  # type: ignore[import-untyped]
import numpy as np
import tensorflow as tf
from google.protobuf import json_format, text_format  # type: ignore[import-untyped]
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from models.repository import WARMUP, ModelRepository

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_SIGNATURE = "serving_default"
INT32_MAX = 2**31 - 1
Code = grpc.StatusCode

#: TF Serving's status → HTTP mapping (model_servers/http_server.cc).
HTTP_STATUS = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}
_TF_TYPE_NAMES = {tf.float32: "float", tf.float16: "half", tf.float64: "double", tf.int32: "int32", tf.int64: "int64"}


class RpcFailure(Exception):
    """A status the stand-in answers with: a gRPC code and TF Serving's message."""

    def __init__(self, code: Any, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


def _code_of(op_error: Any) -> Any:
    """The gRPC code of a TensorFlow ``OpError`` (TensorFlow uses gRPC's canonical code numbers)."""
    by_number = {code.value[0]: code for code in Code}
    return by_number.get(int(op_error.error_code), Code.UNKNOWN)


# -- tensors ------------------------------------------------------------------------------


def _as_proto_field(array: np.ndarray[Any, Any]) -> Any:
    """A tensor as ``Tensor::AsProtoField`` writes it: typed value fields, not ``tensor_content``."""
    if array.dtype == np.float32:
        proto = tensor_pb2.TensorProto(dtype=tf.float32.as_datatype_enum)
        proto.float_val.extend(array.ravel().tolist())
    elif array.dtype == np.float16:
        proto = tensor_pb2.TensorProto(dtype=tf.float16.as_datatype_enum)
        proto.half_val.extend(array.ravel().view(np.uint16).astype(np.int32).tolist())
    else:
        return tf.make_tensor_proto(array)
    proto.tensor_shape.CopyFrom(tf.TensorShape(array.shape).as_proto())
    return proto


# -- servables ----------------------------------------------------------------------------


@dataclass
class _Servable:
    name: str
    version: int
    path: Path
    loaded: Any  # the object tf.saved_model.load gave (keeps the signatures' variables alive)

    @property
    def signatures(self) -> Mapping[str, Any]:
        signatures: Mapping[str, Any] = self.loaded.signatures
        return signatures


@dataclass
class _Model:
    versions: dict[int, _Servable] = field(default_factory=dict)
    states: dict[int, tuple[int, str]] = field(default_factory=dict)  # version → (ModelVersionStatus.State, error)


def _request_name(name: str, version: int | None) -> str:
    return f"Specific({name}, {version})" if version is not None else f"Latest({name})"


def _input_values(specs: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Request tensors checked against a signature's inputs, as TF Serving and the session check them."""
    if set(inputs) != set(specs):
        extra, missing = sorted(set(inputs) - set(specs)), sorted(set(specs) - set(inputs))
        msg = (
            f"input size does not match signature: {len(inputs)}!={len(specs)} len({{{','.join(sorted(inputs))}}}) "
            f"!= len({{{','.join(sorted(specs))}}}). Sent extra: {{{','.join(extra)}}}. "
            f"Missing but required: {{{','.join(missing)}}}."
        )
        raise RpcFailure(Code.INVALID_ARGUMENT, msg)
    values = {}
    for index, (alias, spec) in enumerate(sorted(specs.items())):
        proto = inputs[alias]
        if proto.dtype != spec.dtype.as_datatype_enum:
            found = tf.dtypes.as_dtype(proto.dtype) if proto.dtype else "an unset dtype"
            msg = (
                f"Expects arg[{index}] to be {_TF_TYPE_NAMES.get(spec.dtype, spec.dtype.name)} but "
                f"{_TF_TYPE_NAMES.get(found, getattr(found, 'name', found))} is provided"
            )
            raise RpcFailure(Code.INVALID_ARGUMENT, msg)
        try:
            array = tf.make_ndarray(proto)
        except (TypeError, ValueError) as exc:
            msg = f"input {alias!r} cannot be read: {exc}"
            raise RpcFailure(Code.INVALID_ARGUMENT, msg) from exc
        if not spec.shape.is_compatible_with(array.shape):
            msg = f"input {alias!r} has shape {list(array.shape)}; the signature takes {spec.shape}"
            raise RpcFailure(Code.INVALID_ARGUMENT, msg)
        values[alias] = tf.constant(array)
    return values


def _run(servable: _Servable, request: Any) -> Any:
    """``RunPredict``: one request on one loaded version."""
    signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
    function = servable.signatures.get(signature)
    if function is None:
        msg = f'Serving signature key "{signature}" not found.'
        raise RpcFailure(Code.FAILED_PRECONDITION, msg)
    values = _input_values(function.structured_input_signature[1], request.inputs)
    try:
        outputs = function(**values)
    except tf.errors.OpError as exc:
        msg = exc.message
        raise RpcFailure(_code_of(exc), msg) from exc
    wanted = list(request.output_filter) or sorted(outputs)
    unknown = [alias for alias in wanted if alias not in outputs]
    if unknown:
        msg = (
            f"output tensor alias not found in signature: {unknown[0]} "
            f"Outputs expected to be in the set {{{','.join(sorted(outputs))}}}."
        )
        raise RpcFailure(Code.INVALID_ARGUMENT, msg)
    response = predict_pb2.PredictResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = signature
    for alias in wanted:
        response.outputs[alias].CopyFrom(_as_proto_field(outputs[alias].numpy()))
    return response


def _load(name: str, version: int, path: Path) -> _Servable:
    """Load a SavedModel version and replay its warm-up requests (a failing one fails the load)."""
    servable = _Servable(name, version, path, tf.saved_model.load(str(path)))
    warmup = path / WARMUP
    if warmup.is_file():
        for record in tf.data.TFRecordDataset(str(warmup)):
            entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if entry.HasField("predict_log"):
                _run(servable, entry.predict_log.request)
    return servable


# -- the server core ----------------------------------------------------------------------


class ServerCore:
    """Loaded versions, labels and the config, behind one lock; answers with :class:`RpcFailure`."""

    def __init__(self, base: Path, serving_root: str = "/models", delay_s: float = 0.0) -> None:
        self.base = base
        self.serving_root = PurePosixPath(serving_root)
        self.delay_s = delay_s  # added to every Predict: a remote GPU server's network and queueing time
        self._lock = threading.RLock()
        self._reloading = threading.Lock()
        self._models: dict[str, _Model] = {}
        self._labels: dict[str, dict[str, int]] = {}

    # config ------------------------------------------------------------------------------

    def local_path(self, base_path: str) -> Path:
        """Where a config's ``base_path`` is here: under ``serving_root`` it is read from ``base``."""
        path = PurePosixPath(base_path)
        if path.is_relative_to(self.serving_root):
            return self.base / path.relative_to(self.serving_root)
        return Path(base_path)

    def reload(self, config: Any) -> None:
        """``HandleReloadConfigRequest``: serve exactly ``config``'s models, versions and labels.

        Reloads run one at a time; requests are answered meanwhile by the
        versions already loaded. New versions load before old ones unload (TF
        Serving's availability-preserving policy).
        """
        if config.WhichOneof("config") != "model_config_list":
            msg = (
                "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                "Only ModelConfigList is currently supported"
            )
            raise RpcFailure(Code.INVALID_ARGUMENT, msg)
        entries = list(config.model_config_list.config)
        _validate(entries)
        with self._reloading:
            with self._lock:  # labels are checked against what is AVAILABLE before this config loads anything
                self._labels = self._checked_labels(entries)
            for entry in entries:
                self._serve(entry.name, self.local_path(entry.base_path), entry.model_version_policy)
            with self._lock:
                for name in set(self._models) - {entry.name for entry in entries}:
                    self._unload(name, set(self._models[name].versions))
                served = {n: sorted(m.versions) for n, m in self._models.items() if m.versions}
        log.info("stand-in: serving %s", served)

    def _checked_labels(self, entries: Iterable[Any]) -> dict[str, dict[str, int]]:
        labels: dict[str, dict[str, int]] = {}
        for entry in entries:
            available = self._models.get(entry.name, _Model()).versions
            for label, version in entry.version_labels.items():
                if version not in available:
                    msg = (
                        f"Request to assign label to version {version} of model {entry.name}, "
                        "which is not currently available for inference"
                    )
                    raise RpcFailure(Code.FAILED_PRECONDITION, msg)
                labels.setdefault(entry.name, {})[label] = version
        return labels

    def _serve(self, name: str, folder: Path, policy: Any) -> None:
        on_disk = (
            sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()) if folder.is_dir() else []
        )
        wanted = _by_policy(on_disk, policy)
        with self._lock:
            model = self._models.setdefault(name, _Model())
            if not wanted and not model.versions:
                msg = f"1 model(s) did not become available: {{{name}: no versions under {folder}}}"
                raise RpcFailure(Code.UNKNOWN, msg)
            loaded = {v: s.path for v, s in model.versions.items()}
        for version in wanted:
            if loaded.get(version) != folder / str(version):
                self._load_version(model, name, version, folder / str(version))
        with self._lock:
            self._unload(name, set(model.versions) - set(wanted))

    def _load_version(self, model: _Model, name: str, version: int, path: Path) -> None:
        with self._lock:
            model.states[version] = (get_model_status_pb2.ModelVersionStatus.LOADING, "")
        try:
            servable = _load(name, version, path)  # seconds: outside the lock
        except (OSError, ValueError, RpcFailure, tf.errors.OpError) as exc:
            with self._lock:
                model.states[version] = (get_model_status_pb2.ModelVersionStatus.END, f"load failed: {exc}")
            log.error("stand-in: %s v%d failed to load: %s", name, version, exc)
            return
        with self._lock:
            model.versions[version] = servable
            model.states[version] = (get_model_status_pb2.ModelVersionStatus.AVAILABLE, "")
        log.info("stand-in: loaded %s v%d from %s", name, version, path)

    def _unload(self, name: str, versions: set[int]) -> None:
        model = self._models[name]
        for version in versions:
            model.versions.pop(version, None)
            model.states[version] = (get_model_status_pb2.ModelVersionStatus.END, "")

    # requests ----------------------------------------------------------------------------

    def servable(self, spec: Any) -> _Servable:
        """The loaded version a ``ModelSpec`` asks for (``ServerCore::GetServableHandle``)."""
        if not spec.name:
            msg = "ModelSpec has no name specified."
            raise RpcFailure(Code.INVALID_ARGUMENT, msg)
        choice = spec.WhichOneof("version_choice")
        with self._lock:
            versions = self._models.get(spec.name, _Model()).versions
            if choice == "version_label":
                version = self._labels.get(spec.name, {}).get(spec.version_label)
                if version is None:
                    msg = f"Unrecognized servable version label: {spec.version_label}"
                    raise RpcFailure(Code.INVALID_ARGUMENT, msg)
            elif choice == "version":
                version = spec.version.value
            else:
                version = max(versions, default=None)
            servable = versions.get(version) if version is not None else None
        if servable is None:
            shown = None if choice is None else version
            msg = f"Servable not found for request: {_request_name(spec.name, shown)}"
            raise RpcFailure(Code.NOT_FOUND, msg)
        return servable

    def predict(self, request: Any) -> Any:
        """``PredictionService/Predict`` (after ``delay_s``, without holding a core: waiting costs no CPU)."""
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        return _run(self.servable(request.model_spec), request)

    def input_specs(self, spec: Any, signature: str) -> Mapping[str, Any]:
        """A signature's input specs, for turning REST JSON into tensors (``GetInfoMap``)."""
        function = self.servable(spec).signatures.get(signature or DEFAULT_SIGNATURE)
        if function is None:
            msg = f'Serving signature name: "{signature or DEFAULT_SIGNATURE}" not found in signature def'
            raise RpcFailure(Code.INVALID_ARGUMENT, msg)
        specs: Mapping[str, Any] = function.structured_input_signature[1]
        return specs

    def status(self, request: Any) -> Any:
        """``ModelService/GetModelStatus``: one version's state, or every version's."""
        if not request.HasField("model_spec"):
            msg = "Missing ModelSpec"
            raise RpcFailure(Code.INVALID_ARGUMENT, msg)
        spec = request.model_spec
        with self._lock:
            states = dict(self._models.get(spec.name, _Model()).states)
        if spec.HasField("version"):
            if spec.version.value not in states:
                msg = f"Could not find version {spec.version.value} of model {spec.name}"
                raise RpcFailure(Code.NOT_FOUND, msg)
            states = {spec.version.value: states[spec.version.value]}
        elif not states:
            msg = f"Could not find any versions of model {spec.name}"
            raise RpcFailure(Code.NOT_FOUND, msg)
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, (state, error) in sorted(states.items()):
            entry = response.model_version_status.add(version=version, state=state)
            entry.status.SetInParent()  # TF Serving always sends the health status (OK when healthy)
            if error:
                entry.status.error_code = Code.UNKNOWN.value[0]
                entry.status.error_message = error
        return response


def _validate(entries: list[Any]) -> None:
    names: set[str] = set()
    for entry in entries:
        if entry.name in names:
            msg = f"Illegal to list model {entry.name} multiple times in config list"
            raise RpcFailure(Code.INVALID_ARGUMENT, msg)
        names.add(entry.name)
        if not PurePosixPath(entry.base_path).is_absolute() and "://" not in entry.base_path:
            msg = f"Expected model {entry.name} to have an absolute path or URI; got base_path()={entry.base_path}"
            raise RpcFailure(Code.INVALID_ARGUMENT, msg)
        if not entry.model_platform:
            msg = (
                "Illegal setting neither ModelServerConfig::model_type (deprecated) "
                "nor ModelServerConfig::model_platform."
            )
            raise RpcFailure(Code.INVALID_ARGUMENT, msg)
        if entry.model_platform != "tensorflow":
            msg = f"Model {entry.name} requests unsupported platform {entry.model_platform}"
            raise RpcFailure(Code.INVALID_ARGUMENT, msg)


def _by_policy(on_disk: list[int], policy: Any) -> list[int]:
    """The versions a ``ServableVersionPolicy`` serves (default: the latest one)."""
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return on_disk
    if choice == "specific":
        missing = sorted(set(policy.specific.versions) - set(on_disk))
        if missing:
            log.warning("stand-in: versions %s are not on disk; they will not be served", missing)
        return sorted(set(policy.specific.versions) & set(on_disk))
    count = policy.latest.num_versions if choice == "latest" and policy.latest.num_versions > 0 else 1
    return on_disk[-count:]


def initial_config(base: Path, serving_root: str = "/models") -> Any:
    """``BASE/models.config`` if there is one, else every model of ``base`` at its current version."""
    config = model_server_config_pb2.ModelServerConfig()
    path = base / "models.config"
    if path.is_file():
        return text_format.Parse(path.read_text(encoding="utf-8"), config)
    repository = ModelRepository(base, serving_root)
    for name in repository.names():
        entry = config.model_config_list.config.add(
            name=name, base_path=f"{repository.serving_root}/{name}", model_platform="tensorflow"
        )
        entry.model_version_policy.specific.versions.append(repository.current(name) or repository.versions(name)[-1])
    return config


# -- gRPC -----------------------------------------------------------------------------------


def _answer(context: Any, call: Callable[[], T]) -> T:
    try:
        return call()
    except RpcFailure as exc:
        context.abort(exc.code, exc.message)
        raise  # abort raises; this keeps type checkers and readers sure of it


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    def __init__(self, core: ServerCore) -> None:
        self.core = core

    def Predict(self, request: Any, context: Any) -> Any:  # gRPC names its methods so
        return _answer(context, lambda: self.core.predict(request))


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[misc]
    def __init__(self, core: ServerCore) -> None:
        self.core = core

    def GetModelStatus(self, request: Any, context: Any) -> Any:  # gRPC names its methods so
        return _answer(context, lambda: self.core.status(request))

    def HandleReloadConfigRequest(self, request: Any, context: Any) -> Any:  # gRPC names its methods so
        _answer(context, lambda: self.core.reload(request.config))
        return model_management_pb2.ReloadConfigResponse()


# -- REST -----------------------------------------------------------------------------------

_PREDICT_PATH = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)"
)
_STATUS_PATH = re.compile(r"(?i)/v1/models(?:/([^/:]+))?(?:/versions/(\d+))?")


def _spec(name: str, version: str | None, label: str | None) -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if version:
        request.model_spec.version.value = int(version)
    elif label:
        request.model_spec.version_label = label
    return request


def _tensor(value: Any, spec: Any, alias: str) -> Any:
    try:
        return tf.make_tensor_proto(np.asarray(value, spec.dtype.as_numpy_dtype))
    except (TypeError, ValueError) as exc:
        msg = f"input {alias!r} is not a {spec.dtype.name} tensor: {exc}"
        raise RpcFailure(Code.INVALID_ARGUMENT, msg) from exc


def _columnar(body: Mapping[str, Any], specs: Mapping[str, Any]) -> dict[str, Any]:
    inputs = body["inputs"]
    if not isinstance(inputs, dict):
        if len(specs) != 1:
            msg = "'inputs' must name the signature's inputs"
            raise RpcFailure(Code.INVALID_ARGUMENT, msg)
        inputs = {next(iter(specs)): inputs}
    unknown = sorted(set(inputs) - set(specs))
    if unknown:
        msg = f"JSON object: does not have named input: {unknown[0]}"
        raise RpcFailure(Code.INVALID_ARGUMENT, msg)
    return {alias: _tensor(value, specs[alias], alias) for alias, value in inputs.items()}


def _rows(body: Mapping[str, Any], specs: Mapping[str, Any]) -> dict[str, Any]:
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        msg = "'instances' must be a non-empty list"
        raise RpcFailure(Code.INVALID_ARGUMENT, msg)
    if all(isinstance(i, dict) for i in instances):
        names = set().union(*instances)
        columns = {n: [i.get(n) for i in instances] for n in names}
    elif len(specs) == 1:
        columns = {next(iter(specs)): instances}
    else:
        msg = "instances must be objects naming the signature's inputs"
        raise RpcFailure(Code.INVALID_ARGUMENT, msg)
    return _columnar({"inputs": columns}, specs)


def rest_predict(core: ServerCore, path_match: re.Match[str], raw: bytes) -> dict[str, Any]:
    """One REST predict call: JSON body → ``PredictRequest`` → JSON answer."""
    name, version, label, method = path_match.groups()
    if method.lower() != "predict":
        msg = f"the stand-in does not implement :{method}"
        raise RpcFailure(Code.UNIMPLEMENTED, msg)
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        msg = f"JSON Parse error: {exc}"
        raise RpcFailure(Code.INVALID_ARGUMENT, msg) from exc
    if not isinstance(body, dict):
        msg = "JSON Value: not an object. Expecting object"
        raise RpcFailure(Code.INVALID_ARGUMENT, msg)
    signature = body.get("signature_name", "")
    if not isinstance(signature, str):
        msg = "'signature_name' key must be a string value."
        raise RpcFailure(Code.INVALID_ARGUMENT, msg)
    if ("inputs" in body) == ("instances" in body):
        msg = (
            "Missing 'inputs' or 'instances' key"
            if "inputs" not in body
            else "Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists"
        )
        raise RpcFailure(Code.INVALID_ARGUMENT, msg)
    request = _spec(name, version, label)
    request.model_spec.signature_name = signature
    specs = core.input_specs(request.model_spec, signature)
    tensors = _columnar(body, specs) if "inputs" in body else _rows(body, specs)
    for alias, proto in tensors.items():
        request.inputs[alias].CopyFrom(proto)
    outputs = {alias: tf.make_ndarray(proto) for alias, proto in core.predict(request).outputs.items()}
    if "inputs" in body:
        values = {alias: array.tolist() for alias, array in outputs.items()}
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values())).tolist()}
    batch = len(next(iter(outputs.values())))
    return {"predictions": [{alias: array[i].tolist() for alias, array in outputs.items()} for i in range(batch)]}


def rest_status(core: ServerCore, path_match: re.Match[str]) -> dict[str, Any]:
    """``GET /v1/models/NAME[/versions/N]``."""
    name, version = path_match.groups()
    if not name:
        msg = "Missing model name in request."
        raise RpcFailure(Code.INVALID_ARGUMENT, msg)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    if version:
        request.model_spec.version.value = int(version)
    doc: dict[str, Any] = json_format.MessageToDict(
        core.status(request), preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return doc


class _RestHandler(http.server.BaseHTTPRequestHandler):
    core: ServerCore  # set on the per-server subclass

    def do_POST(self) -> None:  # http.server names its methods so
        match = _PREDICT_PATH.fullmatch(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._reply(lambda: rest_predict(self.core, match, raw) if match else self._malformed())

    def do_GET(self) -> None:  # http.server names its methods so
        match = _STATUS_PATH.fullmatch(self.path)
        self._reply(lambda: rest_status(self.core, match) if match else self._malformed())

    def _malformed(self) -> dict[str, Any]:
        msg = f"Malformed request: {self.command} {self.path}"
        raise RpcFailure(Code.INVALID_ARGUMENT, msg)

    def _reply(self, answer: Callable[[], dict[str, Any]]) -> None:
        try:
            status, doc = 200, answer()
        except RpcFailure as exc:
            status, doc = HTTP_STATUS.get(exc.code, 500), {"error": exc.message}
        data = json.dumps(doc).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # the base class's signature
        log.debug("stand-in REST: " + format, *args)


# -- start and stop -------------------------------------------------------------------------


@dataclass
class StandIn:
    """A running stand-in: its ports, its core, and :meth:`stop`."""

    core: ServerCore
    grpc_port: int
    rest_port: int
    grpc_server: Any  # grpc.Server (tests stop it alone to cut gRPC off)
    http_server: http.server.ThreadingHTTPServer
    thread: threading.Thread

    def stop(self) -> None:
        """Stop both servers (requests in flight get a second to finish)."""
        self.http_server.shutdown()
        self.http_server.server_close()
        self.grpc_server.stop(grace=1.0).wait()
        self.thread.join()


def serve(
    base: Path,
    grpc_port: int,
    rest_port: int,
    *,
    host: str = "127.0.0.1",
    serving_root: str = "/models",
    threads: int = 8,
    delay_s: float = 0.0,
) -> StandIn:
    """Load ``base``'s configured versions and serve them on ``grpc_port`` and ``rest_port`` (0 = any free port).

    ``delay_s`` is added to every Predict (``--delay-ms``): how workers scale when scoring is remote.
    """
    core = ServerCore(base, serving_root, delay_s)
    core.reload(initial_config(base, serving_root))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="standin-grpc"),
        options=[("grpc.max_send_message_length", INT32_MAX), ("grpc.max_receive_message_length", INT32_MAX)],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_PredictionService(core), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(core), server)
    bound = server.add_insecure_port(f"{host}:{grpc_port}")
    if not bound:
        msg = f"cannot bind the stand-in's gRPC port {host}:{grpc_port}"
        raise OSError(msg)
    server.start()
    handler = type("RestHandler", (_RestHandler,), {"core": core})
    http_server = http.server.ThreadingHTTPServer((host, rest_port), handler)
    http_server.daemon_threads = True
    thread = threading.Thread(target=http_server.serve_forever, name="standin-rest", daemon=True)
    thread.start()
    log.info("stand-in: gRPC on %s:%d, REST on %s:%d", host, bound, host, http_server.server_address[1])
    return StandIn(core, bound, int(http_server.server_address[1]), server, http_server, thread)


@dataclass(frozen=True)
class StandInSettings:
    """The stand-in's flags."""

    base: Path
    grpc_port: int = 8500
    rest_port: int = 8501
    host: str = "127.0.0.1"
    serving_root: str = "/models"
    delay_s: float = 0.0


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.support.tfs_standin --base PATH --grpc-port N --rest-port N``: serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.tfs_standin", description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, type=Path, help="model repository base (BASE/<name>/<version>/)")
    parser.add_argument("--grpc-port", type=int, default=8500)
    parser.add_argument("--rest-port", type=int, default=8501)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--serving-root", default="/models", help="where base_path values in models.config point")
    parser.add_argument(
        "--delay-ms",
        type=float,
        default=0.0,
        help="added to every Predict, as a remote GPU server's network and queueing time (default 0)",
    )
    parser.add_argument("--threads", type=int, default=8, help="gRPC requests answered at once (default 8)")
    args = parser.parse_args(argv)
    if args.delay_ms < 0 or args.threads < 1:
        parser.error(f"--delay-ms must be >= 0 and --threads >= 1; found {args.delay_ms} and {args.threads}")
    settings = StandInSettings(args.base, args.grpc_port, args.rest_port, args.host, args.serving_root,
                               args.delay_ms / 1000.0)  # fmt: skip
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handle = serve(settings.base, settings.grpc_port, settings.rest_port, host=settings.host,
                   serving_root=settings.serving_root, threads=args.threads, delay_s=settings.delay_s)  # fmt: skip
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    stopping.wait()
    log.info("stand-in: stopping")
    handle.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
