"""The tfserving scorer against the TF Serving stand-in, and its retry, breaker and codec logic against doubles.

The stand-in is a real gRPC + REST server (tests.support.tfs_standin) on loopback ports
serving real exported SavedModel versions; EmbeddedScorer on the same version
folders is the reference every grid is compared with.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from prometheus_client import REGISTRY
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from foundation.addresses import free_port
from foundation.errors import CircuitOpen, ConfigError, RestError, ScoringError
from serve.scoring import ERROR_REASONS, EmbeddedScorer, get_scorer
from serve.scoring.settings import ScorerSettings, TFServingSettings
from serve.scoring.tfserving import CircuitBreaker, TFServingScorer
from serve.scoring.tfserving.codec import from_tensor_proto, tensor_proto
from serve.scoring.tfserving.errors import error_reason
from serve.scoring.tfserving.scorer import SIGNATURES, retry_of
from tests.support.models import export_test_model, frame
from tests.support.tfs_standin import StandIn, serve

MODEL = "lightning"
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


# -- fixtures: a repository with two versions, and a stand-in serving it --------------------


@pytest.fixture(scope="module")
def two_versions(model_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``model_base`` plus version 2: another model (seed 12) exported with the float16 signature."""
    from models.export import FLOAT16_SIGNATURE
    from models.repository import ModelRepository

    base = tmp_path_factory.mktemp("two-versions") / "repo"
    shutil.copytree(model_base, base)
    assert FLOAT16_SIGNATURE == SIGNATURES["float16"]
    version = export_test_model(ModelRepository(base), base / "scratch-2", seed=12, float16=True,
                                card={"transport": ["float32", "float16"]})  # fmt: skip
    assert version == 2  # added, not promoted: v1 stays served
    return base


@pytest.fixture
def standin(two_versions: Path) -> Iterator[StandIn]:
    handle = serve(two_versions, 0, 0)
    yield handle
    handle.stop()


def scoring(**options: Any) -> ScorerSettings:
    """``options`` sorted into the scorer's own (``tile``, ``concurrency``) and TF Serving's (the rest)."""
    own = {name: options.pop(name) for name in ("tile", "concurrency") if name in options}
    return ScorerSettings(backend="tfserving", **own, tfserving=TFServingSettings(**options))


def settings(handle: StandIn, **changes: Any) -> ScorerSettings:
    return scoring(**{"target": f"127.0.0.1:{handle.grpc_port}", "tile": 40, **changes})


def label_versions(handle: StandIn, labels: dict[str, int]) -> None:
    """Serve exactly the labelled versions with ``version_labels``, as TF Serving does from a ``models.config``.

    Two reloads: TF Serving labels only versions already AVAILABLE (the stand-in loads inside the reload call).
    """
    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add(name=MODEL, base_path=f"/models/{MODEL}", model_platform="tensorflow")
    entry.model_version_policy.specific.versions.extend(sorted(set(labels.values())))
    with grpc.insecure_channel(f"127.0.0.1:{handle.grpc_port}") as channel:
        reload = model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest
        reload(model_management_pb2.ReloadConfigRequest(config=config))
        for label, version in labels.items():
            entry.version_labels[label] = version
        reload(model_management_pb2.ReloadConfigRequest(config=config))


def embedded(base: Path, version: int, x: np.ndarray, tile: int = 40) -> np.ndarray:
    return EmbeddedScorer(base / MODEL / str(version), ScorerSettings(tile=tile)).score(x)


def errors(reason: str) -> float:
    """``ltgcast_scorer_errors_total{backend="tfserving", reason}`` (the registry is global: compare differences)."""
    value = REGISTRY.get_sample_value("ltgcast_scorer_errors_total", {"backend": "tfserving", "reason": reason})
    assert value is not None, f"scorer errors of reason {reason!r} were never created"
    return value


def circuit(transport: str) -> float | None:
    return REGISTRY.get_sample_value("ltgcast_scorer_circuit_state", {"backend": "tfserving", "transport": transport})


# -- against the stand-in -------------------------------------------------------------------


@pytest.mark.slow
def test_tfserving_gives_the_embedded_grid(two_versions: Path, standin: StandIn) -> None:
    x = frame()  # 40-pixel tiles do not divide 90 or 131: 12 tiles with ragged edges, 4 in flight
    scorer = get_scorer(
        two_versions / MODEL / "1",
        scoring(tile=40, target=f"127.0.0.1:{standin.grpc_port}", concurrency=4),
    )
    assert isinstance(scorer, TFServingScorer)
    assert (scorer.name, scorer.version, scorer.feature_set.key) == (MODEL, 1, "ir-ltg/1")
    served = scorer.score(x)
    reference = embedded(two_versions, 1, x)
    assert float(reference.std()) > 0.01
    np.testing.assert_allclose(served, reference, rtol=0, atol=1e-6)
    assert scorer.served_by == {"grpc": 12}
    scorer.close()


@pytest.mark.slow
def test_a_tile_over_grpcs_default_4_mb_limit_passes(two_versions: Path, standin: StandIn) -> None:
    x = frame(700, 700, seed=3)  # one 764 x 764 x 2 float32 tile: 4.7 MB, over gRPC's default 4 MB
    big = TFServingScorer(two_versions / MODEL / "1", settings(standin, tile=0))
    np.testing.assert_allclose(big.score(x), embedded(two_versions, 1, x, tile=0), rtol=0, atol=1e-6)
    small = TFServingScorer(two_versions / MODEL / "1", settings(standin, tile=0, max_message_mb=4, retries=0))
    with pytest.raises(ScoringError, match="RESOURCE_EXHAUSTED"):
        small.score(x)


@pytest.mark.slow
def test_version_labels_in_the_server_config_choose_the_version(two_versions: Path, standin: StandIn) -> None:
    target = f"127.0.0.1:{standin.grpc_port}"
    x = frame(seed=4)
    v1, v2 = embedded(two_versions, 1, x), embedded(two_versions, 2, x)
    assert float(np.abs(v1 - v2).max()) > 0.05  # two different models

    label_versions(standin, {"stable": 1, "canary": 2})  # v2 is loaded, then labelled
    canary = TFServingScorer(two_versions / MODEL / "1", settings(standin, label="canary"))
    stable = TFServingScorer(two_versions / MODEL / "1", settings(standin, label="stable"))
    assert (canary.version, stable.version) == (2, 1)
    np.testing.assert_allclose(canary.score(x), v2, rtol=0, atol=1e-6)
    np.testing.assert_allclose(stable.score(x), v1, rtol=0, atol=1e-6)
    assert (canary.version, stable.version) == (2, 1)

    label_versions(standin, {"stable": 2})  # promote: v1 is unloaded
    np.testing.assert_allclose(stable.score(x), v2, rtol=0, atol=1e-6)
    assert stable.version == 2  # what grids record: the version that produced them
    with pytest.raises(ScoringError, match=r"INVALID_ARGUMENT: Unrecognized servable version label: canary"):
        canary.score(x)
    with grpc.insecure_channel(target) as channel:
        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": MODEL})
        )
    assert {(s.version, s.state) for s in status.model_version_status} == {(1, END), (2, AVAILABLE)}


@pytest.mark.slow
def test_unknown_labels_and_versions_become_scoring_errors(
    two_versions: Path, standin: StandIn, tmp_path: Path
) -> None:
    with pytest.raises(ScoringError, match=r"lightning label 'nope' at gRPC 127\.0\.0\.1:\d+: gRPC INVALID_ARGUMENT: "
                                           r"Unrecognized servable version label: nope"):  # fmt: skip
        TFServingScorer(two_versions / MODEL / "1", settings(standin, label="nope"))
    missing = tmp_path / MODEL / "7"  # a version folder the server does not serve
    missing.mkdir(parents=True)
    shutil.copy(two_versions / MODEL / "1" / "model_card.json", missing)
    scorer = TFServingScorer(missing, settings(standin, retries=0))
    with pytest.raises(ScoringError, match=r"NOT_FOUND: Servable not found for request: Specific\(lightning, 7\)"):
        scorer.score(frame(20, 20))
    with pytest.raises(ValueError, match=r"must be \[H, W, 2\]"):
        scorer.score(np.zeros((5, 5, 3), np.float32))  # refused before anything is sent


@pytest.mark.slow
def test_rest_fallback_gives_the_same_grid_when_grpc_is_dead(two_versions: Path, standin: StandIn) -> None:
    x = frame(70, 95, seed=5)
    slept: list[float] = []
    scorer = TFServingScorer(
        two_versions / MODEL / "1",
        scoring(
            target=f"127.0.0.1:{free_port()}", rest=f"http://127.0.0.1:{standin.rest_port}", tile=40, retries=1,
            breaker_failures=3,
        ),
        sleep=slept.append,
    )  # fmt: skip
    np.testing.assert_allclose(scorer.score(x), embedded(two_versions, 1, x), rtol=0, atol=1e-6)
    assert scorer.served_by == {"rest": 6}
    assert scorer.grpc_breaker.state == "open"
    assert slept  # a backoff after a failed first attempt; none once the breaker is open
    assert set(slept) == {0.05}


@pytest.mark.slow
def test_a_labelled_scorer_over_rest_asks_for_the_version_grpc_resolved(two_versions: Path, standin: StandIn) -> None:
    label_versions(standin, {"stable": 1, "canary": 2})
    x = frame(50, 60, seed=6)
    scorer = TFServingScorer(
        two_versions / MODEL / "1",
        settings(standin, label="canary", rest=f"http://127.0.0.1:{standin.rest_port}"),
        sleep=lambda _: None,
    )
    standin.grpc_server.stop(grace=None).wait()  # gRPC goes away; REST stays
    np.testing.assert_allclose(scorer.score(x), embedded(two_versions, 2, x), rtol=0, atol=1e-6)
    assert scorer.version == 2
    assert scorer.served_by == {"rest": 4}


@pytest.mark.slow
def test_an_unavailable_storm_is_counted_opens_the_circuit_and_recovery_closes_it(two_versions: Path) -> None:
    port, clock = free_port(), Clock()  # nobody listens yet: every call is UNAVAILABLE
    scorer = TFServingScorer(
        two_versions / MODEL / "1",
        scoring(target=f"127.0.0.1:{port}", tile=0, retries=1, breaker_failures=3, breaker_cooldown_s=30.0),
        clock=clock, sleep=clock.sleep,
    )  # fmt: skip
    assert circuit("grpc") == 0
    unavailable, refused = errors("unavailable"), errors("circuit_open")
    x = frame(30, 40, seed=9)
    for _ in range(4):
        with pytest.raises(ScoringError):
            scorer.score(x)
    # Call 1 fails twice (UNAVAILABLE); call 2's first failure is the third in a row: the breaker opens and the
    # retry is refused; calls 3 and 4 are refused without sending.
    assert (errors("unavailable") - unavailable, errors("circuit_open") - refused) == (1, 3)
    assert circuit("grpc") == 2

    handle = serve(two_versions, port, 0)  # TF Serving comes back
    try:
        deadline = time.monotonic() + 30
        while True:
            clock.now += 30.0  # the cool-down ends: the next call is the trial
            try:
                served = scorer.score(x)
                break
            except ScoringError:  # the channel waits out its reconnect backoff (real time) before it tries again
                assert circuit("grpc") == 2  # the trial failed: open again
                assert time.monotonic() < deadline, "TF Serving stand-in not reachable again after 30 s"
                time.sleep(0.2)
        np.testing.assert_allclose(served, embedded(two_versions, 1, x, tile=0), rtol=0, atol=1e-6)
        assert circuit("grpc") == 0
        assert scorer.grpc_breaker.state == "closed"
    finally:
        scorer.close()
        handle.stop()


@pytest.mark.slow
def test_float16_transport_only_where_the_card_allows_it(two_versions: Path, standin: StandIn) -> None:
    x = frame(seed=7)
    with pytest.raises(ConfigError, match=r"lightning v1 allows transport \['float32'\].*'float16'"):
        TFServingScorer(two_versions / MODEL / "1", settings(standin, transport="float16"))
    label_versions(standin, {"canary": 2})
    half = TFServingScorer(two_versions / MODEL / "2", settings(standin, transport="float16"))
    reference = embedded(two_versions, 2, x)
    served = half.score(x)
    np.testing.assert_allclose(served, reference, rtol=0, atol=5e-3)  # float16 keeps ~3 decimal digits of input
    rounded = embedded(two_versions, 2, x.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(served, rounded, rtol=0, atol=1e-6)  # exactly the float32 model on rounded input


@pytest.mark.slow
def test_the_standin_answers_as_tf_serving_does(two_versions: Path, standin: StandIn) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{standin.grpc_port}")
    predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict

    def request(tile: np.ndarray, **spec: Any) -> Any:
        out = predict_pb2.PredictRequest(model_spec={"name": MODEL, **spec})
        out.inputs["tile"].CopyFrom(tf.make_tensor_proto(tile))
        return out

    tile = frame(10 + 64, 12 + 64)[None]
    answer = predict(request(tile))  # no version: the latest served, and the response says which
    assert (answer.model_spec.name, answer.model_spec.version.value) == (MODEL, 1)
    assert answer.model_spec.signature_name == "serving_default"
    assert len(answer.outputs["probability"].float_val) == 120  # typed values, as RunPredict writes them
    assert from_tensor_proto(answer.outputs["probability"]).shape == (1, 10, 12)

    failures = [
        (request(tile, version={"value": 9}), grpc.StatusCode.NOT_FOUND, r"Specific\(lightning, 9\)"),
        (request(tile, signature_name="nope"), grpc.StatusCode.FAILED_PRECONDITION, 'key "nope" not found'),
        (request(tile.astype(np.float16)), grpc.StatusCode.INVALID_ARGUMENT, "to be float but half is provided"),
        (request(np.zeros((1, 74, 76, 3), np.float32)), grpc.StatusCode.INVALID_ARGUMENT, "shape"),
        (request(np.zeros((1, 20, 20, 2), np.float32)), grpc.StatusCode.INVALID_ARGUMENT, ""),  # smaller than a patch
        (predict_pb2.PredictRequest(), grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified"),
    ]
    renamed = request(tile)
    renamed.inputs["image"].CopyFrom(renamed.inputs.pop("tile"))
    failures.append(
        (renamed, grpc.StatusCode.INVALID_ARGUMENT, r"Sent extra: \{image\}. Missing but required: \{tile\}")
    )
    for bad, code, message in failures:
        with pytest.raises(grpc.RpcError) as caught:
            predict(bad)
        assert caught.value.code() == code, caught.value.details()
        assert re.search(message, caught.value.details())

    models = model_service_pb2_grpc.ModelServiceStub(channel)
    status = models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec={"name": MODEL}))
    assert [(s.version, s.state) for s in status.model_version_status] == [(1, AVAILABLE)]
    with pytest.raises(grpc.RpcError) as caught:
        models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "other"}))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add(name=MODEL, base_path=f"/models/{MODEL}", model_platform="tensorflow")
    entry.model_version_policy.specific.versions.extend([1, 2])
    entry.version_labels["canary"] = 2  # v2 is not loaded yet: TF Serving refuses the label
    with pytest.raises(grpc.RpcError) as caught:
        models.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "version 2 of model lightning, which is not currently available" in caught.value.details()
    entry.base_path = "models/lightning"
    with pytest.raises(grpc.RpcError) as caught:
        models.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    channel.close()


@pytest.mark.slow
def test_the_standin_rest_api(standin: StandIn) -> None:
    url = f"http://127.0.0.1:{standin.rest_port}/v1/models/{MODEL}"

    def post(path: str, body: object) -> tuple[int, Any]:
        request = urllib.request.Request(url + path, json.dumps(body).encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    tile = frame(3 + 64, 4 + 64)[None]
    status, doc = post("/versions/1:predict", {"signature_name": "serving_default", "inputs": {"tile": tile.tolist()}})
    assert status == 200
    assert np.asarray(doc["outputs"]).shape == (1, 3, 4)
    status, rows = post(":predict", {"instances": tile.tolist()})
    assert status == 200
    np.testing.assert_array_equal(np.asarray(rows["predictions"]), np.asarray(doc["outputs"]))
    assert post("/labels/nope:predict", {"inputs": tile.tolist()}) == (
        400, {"error": "Unrecognized servable version label: nope"}
    )  # fmt: skip
    assert post("/versions/9:predict", {"inputs": tile.tolist()})[0] == 404
    assert post(":predict", {"inputs": {"image": tile.tolist()}})[0] == 400
    with urllib.request.urlopen(url, timeout=30) as reply:
        assert json.loads(reply.read())["model_version_status"] == [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]


# -- against doubles: tiling, retries, backoff, the breaker, labels -------------------------


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "fake") -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class FakeStub:
    """A PredictionService whose 'model' returns the tile's channel 0 without its halo; fails on request."""

    def __init__(self, failures: list[grpc.StatusCode] | None = None, version: int = 1) -> None:
        self.failures = list(failures or [])
        self.version = version
        self.requests: list[Any] = []

    def Predict(self, request: Any, timeout: float | None = None) -> Any:  # noqa: N802
        self.requests.append(request)
        if self.failures:
            raise FakeRpcError(self.failures.pop(0))
        tile = from_tensor_proto(request.inputs["tile"])
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = self.version
        response.outputs["probability"].CopyFrom(tensor_proto(tile[:, 32:-32, 32:-32, 0].astype(np.float32)))
        return response


@pytest.fixture
def version_path(tmp_path: Path) -> Path:
    path = tmp_path / MODEL / "1"
    path.mkdir(parents=True)
    (path / "model_card.json").write_text(json.dumps({"name": MODEL, "feature_set": "ir-ltg/1"}))
    return path


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def fake_scorer(path: Path, stub: FakeStub, clock: Clock, **changes: Any) -> TFServingScorer:
    options = {"tile": 16, "concurrency": 1, "breaker_failures": 3, "breaker_cooldown_s": 30.0, **changes}
    return TFServingScorer(path, scoring(**options), stub=stub, clock=clock, sleep=clock.sleep)


def test_tiles_are_cut_with_halos_and_put_back_in_place(version_path: Path) -> None:
    x = frame(37, 50, seed=8)
    scorer = fake_scorer(version_path, FakeStub(), Clock(), concurrency=3)
    np.testing.assert_array_equal(scorer.score(x), x[..., 0])  # the fake model gives back the tile's centre
    assert scorer.served_by == {"grpc": 12}


def test_retryable_failures_back_off_exponentially_then_succeed(version_path: Path) -> None:
    clock, stub = Clock(), FakeStub([grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
    scorer = fake_scorer(version_path, stub, clock, tile=0, backoff_s=0.5, backoff_max_s=0.8)
    x = frame(8, 9)
    np.testing.assert_array_equal(scorer.score(x), x[..., 0])
    assert clock.slept == [0.5, 0.8]
    assert len(stub.requests) == 3
    retry = retry_of(TFServingSettings(retries=5, backoff_s=0.1, backoff_max_s=1.0))
    assert (retry.attempts, [retry.delay(n) for n in range(1, 6)]) == (6, [0.1, 0.2, 0.4, 0.8, 1.0])


def test_other_failures_are_not_retried_and_name_model_target_and_code(version_path: Path) -> None:
    clock, stub = Clock(), FakeStub([grpc.StatusCode.INVALID_ARGUMENT])
    scorer = fake_scorer(version_path, stub, clock, tile=0, target="tfs:8500")
    with pytest.raises(ScoringError, match=r"^lightning version 1 at gRPC tfs:8500: gRPC INVALID_ARGUMENT: fake$"):
        scorer.score(frame(8, 9))
    assert (len(stub.requests), clock.slept, scorer.grpc_breaker.state) == (1, [], "closed")


def test_the_breaker_opens_fails_fast_and_recovers_after_the_cooldown(version_path: Path) -> None:
    clock, stub = Clock(), FakeStub([grpc.StatusCode.UNAVAILABLE] * 4)
    scorer = fake_scorer(version_path, stub, clock, tile=0, retries=0)
    x = frame(8, 9)
    for _ in range(3):
        with pytest.raises(ScoringError, match="UNAVAILABLE"):
            scorer.score(x)
    assert scorer.grpc_breaker.state == "open"
    with pytest.raises(ScoringError, match="circuit breaker open"):
        scorer.score(x)
    assert len(stub.requests) == 3  # failed fast: nothing sent
    clock.now += 30.0
    assert scorer.grpc_breaker.state == "half-open"
    with pytest.raises(ScoringError, match="UNAVAILABLE"):  # the trial call fails: open again, a new cooldown
        scorer.score(x)
    clock.now += 29.0
    with pytest.raises(ScoringError, match="circuit breaker open"):
        scorer.score(x)
    clock.now += 1.0
    np.testing.assert_array_equal(scorer.score(x), x[..., 0])  # the trial succeeds: closed
    assert scorer.grpc_breaker.state == "closed"
    assert len(stub.requests) == 5


def test_the_half_open_breaker_lets_one_trial_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=2, cooldown_s=10.0, clock=clock)
    breaker.failure()
    assert (breaker.state, breaker.allow()) == ("closed", True)
    breaker.success()
    breaker.failure()
    assert breaker.state == "closed"  # a success in between: not consecutive
    breaker.failure()
    assert (breaker.state, breaker.allow()) == ("open", False)
    clock.now = 10.0
    assert [breaker.allow(), breaker.allow()] == [True, False]


def test_a_label_is_resolved_by_the_first_tile_and_pins_the_rest(version_path: Path) -> None:
    stub = FakeStub(version=3)
    scorer = fake_scorer(version_path, stub, Clock(), label="canary", tile=10)
    assert scorer.version == 3  # resolved when built
    x = frame(20, 20)
    np.testing.assert_array_equal(scorer.score(x), x[..., 0])
    first, *rest = stub.requests[1:]
    assert first.model_spec.version_label == "canary"
    assert [r.model_spec.version.value for r in rest] == [3, 3, 3]
    assert {r.model_spec.signature_name for r in stub.requests} == {"serving_default"}


def test_an_answer_from_another_version_is_refused(version_path: Path) -> None:
    scorer = fake_scorer(version_path, FakeStub(version=2), Clock(), tile=0)
    with pytest.raises(ScoringError, match="asked for version 1, version 2 answered"):
        scorer.score(frame(8, 8))


class StormStub(FakeStub):
    """Every request fails UNAVAILABLE, once ``tiles`` requests are in flight together."""

    def __init__(self, tiles: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(tiles, timeout=30)

    def Predict(self, request: Any, timeout: float | None = None) -> Any:  # noqa: N802
        self.requests.append(request)
        self.barrier.wait()
        raise FakeRpcError(grpc.StatusCode.UNAVAILABLE)


class NanStub(FakeStub):
    """Answers as FakeStub, with NaN at each tile's first pixel."""

    def Predict(self, request: Any, timeout: float | None = None) -> Any:  # noqa: N802
        response = super().Predict(request, timeout)
        values = from_tensor_proto(response.outputs["probability"])
        values[:, 0, 0] = np.nan
        response.outputs["probability"].CopyFrom(tensor_proto(values))
        return response


def test_a_new_scorer_exports_its_reasons_at_zero_and_closed_circuits(version_path: Path) -> None:
    from monitor.metrics import SCORER_CIRCUIT, SCORER_ERRORS

    for reason in ERROR_REASONS:  # as in a fresh process (the registry is global)
        SCORER_ERRORS.remove("tfserving", reason)
    SCORER_CIRCUIT.remove("tfserving", "grpc")
    SCORER_CIRCUIT.remove("tfserving", "rest")
    fake_scorer(version_path, FakeStub(), Clock())
    assert {reason: errors(reason) for reason in ERROR_REASONS} == dict.fromkeys(ERROR_REASONS, 0.0)
    assert (circuit("grpc"), circuit("rest")) == (0, None)  # no REST URL: no REST breaker to show
    fake_scorer(version_path, FakeStub(), Clock(), rest=f"http://127.0.0.1:{free_port()}")
    assert circuit("rest") == 0


def test_a_failed_frame_counts_once_however_many_tiles_failed(version_path: Path) -> None:
    x = frame(37, 50, seed=8)  # 12 tiles of 16 pixels
    stub = StormStub(12)
    scorer = fake_scorer(version_path, stub, Clock(), concurrency=12, retries=0, breaker_failures=100)
    before = errors("unavailable")
    with pytest.raises(ScoringError, match="UNAVAILABLE"):
        scorer.score(x)
    assert len(stub.requests) == 12  # every tile failed
    assert errors("unavailable") - before == 1  # the frame is the call that failed


@pytest.mark.parametrize(
    ("stub", "reason"),
    [
        (FakeStub([grpc.StatusCode.UNAVAILABLE] * 3), "unavailable"),
        (FakeStub([grpc.StatusCode.DEADLINE_EXCEEDED] * 3), "deadline_exceeded"),
        (FakeStub([grpc.StatusCode.RESOURCE_EXHAUSTED] * 3), "resource_exhausted"),
        (FakeStub([grpc.StatusCode.INVALID_ARGUMENT]), "invalid_argument"),
        (FakeStub([grpc.StatusCode.NOT_FOUND]), "other"),
        (FakeStub(version=2), "bad_output"),  # another version answered
        (NanStub(), "bad_output"),
    ],
    ids=["unavailable", "deadline", "exhausted", "invalid", "not-found", "other-version", "nan"],
)
def test_failed_calls_are_counted_by_the_reason_of_what_failed_last(
    version_path: Path, stub: FakeStub, reason: str
) -> None:
    scorer = fake_scorer(version_path, stub, Clock(), tile=0, retries=2, breaker_failures=10)
    before = {r: errors(r) for r in ERROR_REASONS}
    with pytest.raises(ScoringError):
        scorer.score(frame(8, 9))
    assert {r: errors(r) - before[r] for r in ERROR_REASONS} == {r: float(r == reason) for r in ERROR_REASONS}


def test_refused_input_and_an_open_circuit_are_counted(version_path: Path) -> None:
    clock, stub = Clock(), FakeStub([grpc.StatusCode.UNAVAILABLE] * 3)
    scorer = fake_scorer(version_path, stub, clock, tile=0, retries=0)
    invalid, refused = errors("invalid_argument"), errors("circuit_open")
    with pytest.raises(ValueError, match=r"must be \[H, W, 2\]"):
        scorer.score(np.zeros((5, 5, 3), np.float32))
    assert (errors("invalid_argument") - invalid, stub.requests) == (1, [])  # counted; nothing sent
    for _ in range(3):
        with pytest.raises(ScoringError, match="UNAVAILABLE"):
            scorer.score(frame(8, 9))
    with pytest.raises(ScoringError, match="circuit breaker open"):
        scorer.score(frame(8, 9))
    assert errors("circuit_open") - refused == 1


def scoring_error(cause: BaseException) -> ScoringError:
    try:
        raise ScoringError("lightning version 1 at REST http://tfs:8501: failed") from cause
    except ScoringError as exc:
        return exc


def test_rest_and_transport_failures_have_their_reasons() -> None:
    import http.client

    cases = {
        "unavailable": [RestError(503, "busy"), urllib.error.URLError(ConnectionRefusedError(111, "refused")),
                        http.client.RemoteDisconnected("closed"), FakeRpcError(grpc.StatusCode.UNAVAILABLE)],
        "deadline_exceeded": [RestError(504, "slow"), urllib.error.URLError(TimeoutError("timed out")),
                              TimeoutError("timed out")],
        "resource_exhausted": [RestError(429, "full")],
        "invalid_argument": [RestError(400, "bad tile")],
        "circuit_open": [CircuitOpen("open")],
        "bad_output": [json.JSONDecodeError("Expecting value", "<html>", 0), ValueError("wrong shape")],
        "other": [RestError(404, "no such model"), ConfigError("transport"), FakeRpcError(grpc.StatusCode.INTERNAL),
                  RuntimeError("?")],
    }  # fmt: skip
    found = {reason: [error_reason(scoring_error(cause)) for cause in causes] for reason, causes in cases.items()}
    assert found == {reason: [reason] * len(causes) for reason, causes in cases.items()}
    assert error_reason(ScoringError("a label moved to a version of another feature set")) == "other"


class WatchingStub(FakeStub):
    """Notes the gRPC circuit gauge as each request goes out."""

    def __init__(self, failures: list[grpc.StatusCode]) -> None:
        super().__init__(failures)
        self.gauge: list[float | None] = []

    def Predict(self, request: Any, timeout: float | None = None) -> Any:  # noqa: N802
        self.gauge.append(circuit("grpc"))
        return super().Predict(request, timeout)


def test_the_circuit_gauge_follows_the_breaker(version_path: Path) -> None:
    clock, stub = Clock(), WatchingStub([grpc.StatusCode.UNAVAILABLE] * 4)
    scorer = fake_scorer(version_path, stub, clock, tile=0, retries=0, rest=f"http://127.0.0.1:{free_port()}")
    assert (circuit("grpc"), circuit("rest")) == (0, 0)  # exported when built
    x = frame(8, 9)
    seen = []
    for _ in range(3):
        with pytest.raises(ScoringError):  # no REST answers either: the fallback fails too
            scorer.score(x)
        seen.append(circuit("grpc"))
    assert seen == [0, 0, 2]  # open at the third consecutive failure
    clock.now += 30.0  # half-open now; the gauge shows it at the next call, the trial
    with pytest.raises(ScoringError):
        scorer.score(x)
    assert (stub.gauge[-1], circuit("grpc")) == (1, 2)  # the trial went out half-open, failed: open again
    clock.now += 30.0
    np.testing.assert_array_equal(scorer.score(x), x[..., 0])
    assert (stub.gauge[-1], circuit("grpc")) == (1, 0)  # the trial succeeded: closed


def test_tensor_protos_agree_with_tensorflow() -> None:
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(tf.make_ndarray(tensor_proto(x)), x)
    np.testing.assert_array_equal(from_tensor_proto(tf.make_tensor_proto(x)), x)
    half = x.astype(np.float16)
    np.testing.assert_array_equal(tf.make_ndarray(tensor_proto(half)), half)
    typed = tf.make_tensor_proto(half)
    typed.half_val.extend(half.ravel().view(np.uint16).astype(np.int32).tolist())  # as AsProtoField writes it
    typed.ClearField("tensor_content")
    np.testing.assert_array_equal(from_tensor_proto(typed), half)
    with pytest.raises(ValueError, match="DT_FLOAT or DT_HALF"):
        from_tensor_proto(tf.make_tensor_proto(np.zeros(3, np.int32)))


def test_settings_are_checked_and_the_registry_names_the_backend(version_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"TFServingSettings.transport: expected one of \['float16', 'float32'\]"):
        TFServingSettings(transport="bfloat16")
    with pytest.raises(ConfigError, match=r"TFServingSettings.retries: expected an integer >= 0, found -1"):
        TFServingSettings(retries=-1)
    with pytest.raises(ConfigError, match=r"ScorerSettings.concurrency: expected an integer >= 1, found 0"):
        ScorerSettings(concurrency=0)
    with pytest.raises(ConfigError, match="TFServingSettings.rest: expected an http"):
        TFServingSettings(rest="127.0.0.1:8501")
    with pytest.raises(ValueError, match="unknown scorer backend 'tfs'; expected one of: embedded, patch, tfserving"):
        get_scorer(version_path, ScorerSettings(backend="tfs"))
    nested = ScorerSettings(backend="tfserving", tile=64, concurrency=2,
                            tfserving=TFServingSettings(target="t:1", rest="http://r:2", label="stable"))  # fmt: skip
    scorer = TFServingScorer(version_path, nested, stub=FakeStub(), clock=Clock(), sleep=Clock().sleep)
    assert (scorer.tile, scorer.concurrency, scorer.settings.target, scorer.settings.label) == (64, 2, "t:1", "stable")
