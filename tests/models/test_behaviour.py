"""The behavioural gate (models/behaviour.py): every check can pass and can fail, on tiny hand-made models.

The hand-made models are dense functions of box maxima (the receptive field is the real 64×64 one), so each
failure is caused by one designed flaw: a model that ranks by lightning and cold tops passes everything; one
flaw at a time makes exactly the check built for it fail, with a problem string that names it and its numbers.
The committed default model (``ir-ltg/1``, raw scaling, fill edges) fails the suite.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from featurize.channels import get_feature_set
from featurize.features import dense_features
from ltgcast.cli import main
from models import behaviour
from models.repository import ModelRepository
from models.validation import validate

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "models" / "repository" / "lightning" / "1"

Logit = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


# -- hand-made models ----------------------------------------------------------------------------------------------
def box(x: tf.Tensor, size: int, kind: str = "max") -> tf.Tensor:
    """``[N, S, S]`` → ``[N, S - 63, S - 63]``: the ``size`` box around each output pixel (the featurize convention)."""
    pool = tf.nn.max_pool2d if kind == "max" else tf.nn.avg_pool2d
    pooled = pool(x[..., None], size, 1, "VALID")[..., 0]
    off, rows, cols = 32 - size // 2, tf.shape(x)[1] - 63, tf.shape(x)[2] - 63
    return pooled[:, off : off + rows, off : off + cols]


def features(tile: tf.Tensor, scaling: str) -> tuple[tf.Tensor, tf.Tensor]:
    """The ``ir`` channel and log1p(flashes per pixel), whatever the scaling."""
    ir, ltg = tile[..., 0], tf.maximum(tile[..., 1], 0.0)
    flashes = ltg if scaling == "raw" else tf.math.expm1(ltg * math.log1p(100.0))
    return ir, tf.math.log1p(flashes)


def sane(bias: float = -5.0) -> Logit:
    """Ranks by the coldest top and the most lightning in the 16×16 box: the physics contract holds."""
    return lambda ir, lg: bias + 4.0 * box(ir, 16) + 4.0 * box(lg, 16)


def edge_rows(shape: tf.Tensor, band: int = 8) -> tf.Tensor:
    rows, cols = tf.range(shape[1]), tf.range(shape[2])
    r = (rows < band) | (rows >= shape[1] - band)
    c = (cols < band) | (cols >= shape[2] - band)
    return tf.cast(r[:, None] | c[None, :], tf.float32)[None]


def stripes(shape: tf.Tensor) -> tf.Tensor:
    return tf.cast((tf.range(shape[1]) // 8) % 2, tf.float32)[None, :, None]


FLAWS: dict[str, tuple[Logit, Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None]] = {
    # name: (logit, probability post-processing given (probability, logit-shaped reference))
    "inverted": (lambda ir, lg: -5.0 + 4.0 * box(ir, 16) - 4.0 * box(lg, 16), None),
    "cold_penalty": (lambda ir, lg: sane()(ir, lg) - 30.0 * tf.nn.relu(box(ir, 16) - 0.82), None),
    "timid": (sane(-9.0), None),
    "moat": (lambda ir, lg: sane()(ir, lg) - 4.0 * tf.cast((box(lg, 32) > 0) & (box(lg, 16) <= 0), tf.float32), None),
    "edge_constant": (sane(), lambda p, ref: tf.minimum(p + 0.3 * edge_rows(tf.shape(ref)), 1.0)),
    "edge_dip": (sane(), lambda p, ref: p * (1.0 - 0.5 * edge_rows(tf.shape(ref)))),
    "striped": (sane(), lambda p, ref: 0.998 * p + 0.002 * stripes(tf.shape(ref))),
    "global": (lambda ir, lg: sane()(ir, lg) + 0.5 * tf.reduce_max(ir, axis=[1, 2])[:, None, None], None),
}  # fmt: skip


class Handmade(tf.Module):
    """A SavedModel-shaped module: ``serving_default`` (tile → [N, H, W]) and ``patch`` (64×64 → [N])."""

    def __init__(self, logit: Logit, scaling: str, channels: int = 2, post: Callable | None = None) -> None:
        super().__init__()
        self.logit, self.scaling, self.post = logit, scaling, post
        spec = tf.TensorSpec([None, None, None, channels], tf.float32, name="tile")
        self.dense = tf.function(self._dense, input_signature=[spec])
        self.patch = tf.function(
            self._patch, input_signature=[tf.TensorSpec([None, 64, 64, channels], tf.float32, name="patch")]
        )

    def _full(self, tile: tf.Tensor) -> tf.Tensor:
        z = self.logit(*features(tile, self.scaling))
        p = tf.sigmoid(z)
        return p if self.post is None else self.post(p, z)

    def _dense(self, tile: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probability": self._full(tile)[:, :-1, :-1]}

    def _patch(self, patch: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probability": self._full(patch)[:, 0, 0]}


def flawed(name: str) -> Handmade:
    logit, post = FLAWS[name]
    return Handmade(logit, "raw", post=post)


def suite(module: Handmade, feature_set: str = "ir-ltg/1", **kwargs: object) -> dict[str, dict]:
    return behaviour.run_checks(module.dense, feature_set, **kwargs)


def failed(results: dict[str, dict]) -> set[str]:
    return {name for name, r in results.items() if not r["passed"]}


# -- the checks on hand-made models --------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["ir-ltg/1", "ir-ltg/2", "ir-ltg-trend/2"])
def test_a_model_that_ranks_by_cold_tops_and_lightning_passes_every_check(key: str) -> None:
    fs = get_feature_set(key)
    results = suite(Handmade(sane(), fs.scaling, len(fs.channels)), key)
    assert failed(results) == set(), behaviour.summary(results)
    assert list(results) == list(behaviour.CHECKS)
    assert behaviour.problems(results) == []
    for result in results.values():
        assert isinstance(result["detail"], str)
        assert result["detail"]
    assert results["persistence"]["rate_source"] == "default: the card has no persistence_rate"
    assert results["persistence"]["bar"] == 0.35
    assert results["translation"]["largest_difference"] <= 1e-4
    assert results["locality"]["largest_far_change"] <= 1e-6 < results["locality"]["largest_near_change"]
    assert results["edges"]["edges_policy"] == fs.edges
    json.dumps(results)  # what the card and the CLI record


@pytest.mark.parametrize(
    ("flaw", "fails"),
    [
        ("inverted", {"monotone_lightning", "persistence", "inverted_ranking"}),
        ("cold_penalty", {"monotone_cold"}),
        ("timid", {"persistence"}),
        ("moat", {"no_moat"}),
        ("edge_constant", {"edges"}),
        ("edge_dip", {"edges"}),
        ("striped", {"translation"}),
        ("global", {"locality"}),
    ],
)
def test_each_flaw_fails_the_check_built_for_it_with_its_numbers(flaw: str, fails: set[str]) -> None:
    results = suite(flawed(flaw))
    assert fails <= failed(results), behaviour.summary(results)
    if flaw != "inverted":  # one flaw, one failed check
        assert failed(results) == fails, behaviour.summary(results)
    problems = behaviour.problems(results)
    assert len(problems) == len(failed(results))
    for name in fails:
        (line,) = [p for p in problems if p.startswith(f"behaviour {name}: ")]
        assert any(ch.isdigit() for ch in line), line


def test_the_failure_messages_name_the_numbers() -> None:
    inverted = suite(flawed("inverted"))
    lightning = inverted["monotone_lightning"]
    assert lightning["detail"].startswith("probability fell from ")
    assert " flashes/px to " in lightning["detail"]
    assert lightning["largest_drop"] > 0.01
    assert lightning["levels"] == [0.0, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0]
    assert "above the core of a storm with lightning" in inverted["inverted_ranking"]["detail"]
    moat = suite(flawed("moat"), only=["no_moat"])["no_moat"]
    assert "px from the flashes is below" in moat["detail"]
    assert "in the same cold cloud" in moat["detail"]
    assert len(moat["storms"]["300 flashes/px"]["profile_px_p_bt"]) == 25
    edge = suite(flawed("edge_constant"), only=["edges"])["edges"]
    assert "(border stripe)" in edge["detail"]
    assert "a featureless 295 K frame scores up to 0.3" in edge["detail"]
    dip = suite(flawed("edge_dip"), only=["edges"])["edges"]
    assert (
        dip["detail"] == "a storm centred on the top edge scores 0.50 at its centre, the same storm in the middle 1.00"
    )


def test_the_persistence_bar_is_a_share_of_the_card_s_rate_when_it_has_one() -> None:
    model = Handmade(sane(-5.6), "raw")  # its weakest pixel with a flash in its box: ~0.44
    default = suite(model, only=["persistence"])["persistence"]
    assert default["passed"], default
    assert 0.35 < default["min"] < 0.475
    strict = suite(model, only=["persistence"], persistence_rate=0.95)["persistence"]
    assert not strict["passed"]
    assert (strict["bar"], strict["rate_source"]) == (0.475, "model card")
    assert "is below the bar 0.47" in strict["detail"]
    assert "persistence rate 0.95" in strict["detail"]
    floor = suite(model, only=["persistence"], persistence_rate=0.2)["persistence"]
    assert floor["bar"] == 0.25


def test_nan_and_misshapen_outputs_fail_every_check_with_a_reason() -> None:
    nan = Handmade(sane(), "raw", post=lambda p, ref: p * np.nan)
    assert failed(suite(nan)) == set(behaviour.CHECKS)
    wrong = tf.function(lambda tile: {"probability": tf.zeros(tf.shape(tile)[:3])})  # the halo is not dropped
    results = behaviour.run_checks(wrong, "ir-ltg/1")
    assert failed(results) == set(behaviour.CHECKS)
    assert all("could not run: ValueError" in r["detail"] for r in results.values())


def test_the_scene_helpers_use_the_label_s_box_and_are_monotone() -> None:
    scene = behaviour.storm((96, 96), (40, 50), 215.0, 10.0)
    ltg = scene.flashes.astype(np.float32)
    expected = dense_features({"ir": np.zeros_like(ltg), "ltg": ltg})["ltg_max_16"] > 0
    np.testing.assert_array_equal(behaviour.box_held_flash(scene.flashes), expected)
    more = behaviour.flash_core((96, 96), (40, 50), 30.0)
    assert (more >= scene.flashes).all()
    colder = behaviour.cold_top(behaviour.clear_sky((96, 96)), (40, 50), 205.0)
    assert (colder <= scene.bt_k).all()
    assert colder[40, 50] == 205.0
    shifted = behaviour.field((7, 13))
    np.testing.assert_allclose(shifted.bt_k[:-7, :-13], behaviour.field().bt_k[7:, 13:])


# -- the gate, the CLI and the committed default ---------------------------------------------------------------
def save(module: Handmade, repo: ModelRepository, scratch: Path, card: dict | None = None) -> int:
    tf.saved_model.save(module, str(scratch), signatures={"serving_default": module.dense, "patch": module.patch})
    card = {"feature_set": "ir-ltg/1", "channels": ["ir", "ltg"], "halo": 32, **(card or {})}
    return repo.add("lightning", scratch, card, channels=2)


def test_validate_runs_the_suite_and_refuses_a_version_that_fails_naming_each_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "repo"
    repo = ModelRepository(base)
    good = save(Handmade(sane(), "raw"), repo, tmp_path / "good")
    bad = save(flawed("moat"), repo, tmp_path / "bad", {"persistence_rate": 0.8})

    report = validate(repo, "lightning", good)
    assert report.passed, report.problems
    assert set(report.checks["behaviour"]) == set(behaviour.CHECKS)
    assert all(r["passed"] for r in report.checks["behaviour"].values())

    report = validate(repo, "lightning", bad)
    assert [p.split(":")[0] for p in report.problems] == ["behaviour no_moat"]
    assert report.checks["behaviour"]["persistence"]["rate_source"] == "model card"
    assert report.checks["dense_patch_max_difference"] <= 1e-5  # the other checks still ran

    assert main(["models", "validate", "--base", str(base), "--version", str(good)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["checks"]["behaviour"]["no_moat"]["passed"]
    assert [line.split(":")[0] for line in err.splitlines() if line.startswith("behaviour ")] == [
        f"behaviour {name}" for name in behaviour.CHECKS
    ]
    assert "behaviour edges: PASS " in err

    assert main(["models", "validate", "--base", str(base), "--version", str(bad)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "behaviour no_moat: FAIL probability " in err
    assert "behaviour locality: PASS " in err
    assert "ltgcast models: behaviour no_moat: probability " in err  # the refusal, one problem per failed check


def test_run_suite_reads_the_card_beside_a_saved_model(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "repo")
    version = save(Handmade(sane(-5.6), "raw"), repo, tmp_path / "v", {"persistence_rate": 0.95})
    results = behaviour.run_suite(repo.path("lightning", version))
    assert failed(results) == {"persistence"}
    entry = behaviour.card_entry(results)
    assert (entry["suite"], entry["passed"], entry["failed"]) == (behaviour.SUITE_VERSION, False, ["persistence"])


def test_the_committed_default_fails_the_suite(tmp_path: Path) -> None:
    """Issue 16: raw flash counts, fill edges. Its numbers are in the report of the change that added the suite."""
    results = behaviour.run_suite(DEFAULT)
    bad = failed(results)
    assert {"edges", "inverted_ranking"} <= bad, behaviour.summary(results)
    assert {"monotone_lightning", "no_moat"} & bad
    assert {"translation", "locality"}.isdisjoint(bad)  # it is a real fully convolutional network
    assert results["inverted_ranking"]["quiet_core"] > max(results["inverted_ranking"]["storm_cores"].values())
    assert results["edges"]["edges_policy"] == "fill"

    base = tmp_path / "repo"  # a copy: validate must never write into the committed repository
    shutil.copytree(DEFAULT.parent, base / "lightning")
    report = validate(ModelRepository(base), "lightning", 1)
    assert not report.passed
    assert {p.split(":")[0].removeprefix("behaviour ") for p in report.problems} == bad
