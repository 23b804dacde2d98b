"""Hot-swap: new versions gated, loaded, warmed up and swapped (or shadowed); rejections kept; the CLI followed.

The logic is driven through ``check()`` with a fake loader and gate over a real
repository layout (folders added with ``ModelRepository.add``); the last test
runs the real gate and the embedded scorer on real exported SavedModels.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from featurize.channels import get_feature_set
from foundation.clock import wait_until
from foundation.errors import ModelRejected
from models.repository import ModelRepository
from models.validation import ValidationReport
from serve.scoring import EmbeddedScorer
from serve.scoring.hotswap import GATE_REASON, HotSwapSettings, ModelSlot, ServingModels, SwapEvent, warm_up
from serve.scoring.settings import ScorerSettings
from tests.support.clock import FakeClock
from tests.support.models import export_test_model

NAME = "lightning"
START = datetime(2024, 6, 15, 18, 0, tzinfo=UTC)


# -- doubles: a scorer whose output the model card sets, a loader and a gate that read the card ---------------------
@dataclass
class FakeScorer:
    name: str
    version: int
    value: float
    feature_set: Any = field(default_factory=lambda: get_feature_set("ir-ltg/1"))

    def score(self, stacked: np.ndarray) -> np.ndarray:
        return np.full(stacked.shape[:2], self.value, np.float32)


@dataclass
class Doubles:
    loads: list[int] = field(default_factory=list)
    gated: list[int] = field(default_factory=list)

    def load(self, path: Path) -> FakeScorer:
        card = json.loads((path / "model_card.json").read_text())
        if card.get("unloadable"):
            raise OSError(f"{path}/saved_model.pb: truncated")
        self.loads.append(int(path.name))
        return FakeScorer(NAME, int(path.name), float(card["value"]))

    def gate(self, repo: ModelRepository, name: str, version: int) -> ValidationReport:
        self.gated.append(version)
        card = repo.card(name, version)
        if card.get("gate_crashes"):
            raise RuntimeError("no such signature")
        return ValidationReport(name, version, problems=list(card.get("problems", [])))


def add_version(base: Path, value: float = 0.3, **card: Any) -> int:
    """A version folder in the real layout (the SavedModel itself is a stand-in: the doubles read the card)."""
    scratch = base / "scratch"
    scratch.mkdir(parents=True)
    (scratch / "saved_model.pb").write_bytes(b"stand-in")
    return ModelRepository(base).add(NAME, scratch, {"feature_set": "ir-ltg/1", "value": value, **card}, channels=2)


def make_repo(base: Path) -> ModelRepository:
    repo = ModelRepository(base)
    repo.promote(NAME, add_version(base, 0.1), reason="first")
    return repo


def make_slot(base: Path, doubles: Doubles, **settings: Any) -> ModelSlot:
    return ModelSlot(base, NAME, doubles.load, HotSwapSettings(**settings), doubles.gate, clock=FakeClock(START))


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- the scan -------------------------------------------------------------------------------------------------------
def test_a_new_version_that_passes_is_swapped_in_and_recorded(tmp_path: Path) -> None:
    repo, doubles = make_repo(tmp_path), Doubles()
    slot = make_slot(tmp_path, doubles)
    before = slot.current()
    assert (before.stable.version, before.shadow) == (1, None)
    assert slot.check() == []
    swapped = metric("ltgcast_model_swaps_total", outcome="swapped")

    assert add_version(tmp_path, 0.7) == 2
    assert slot.check() == [SwapEvent(2, "swapped", previous=1)]
    after = slot.current()
    assert after.stable.version == 2
    assert after.stable.score(np.zeros((3, 4, 2), np.float32))[0, 0] == np.float32(0.7)
    assert before.stable.version == 1  # the pair a frame already holds is never changed under it
    assert repo.current(NAME) == 2
    assert repo.state(NAME)["history"][-1]["reason"] == GATE_REASON
    assert "versions: 2" in (tmp_path / "models.config").read_text()
    assert metric("ltgcast_model_swaps_total", outcome="swapped") == swapped + 1
    assert metric("ltgcast_model_version", role="stable") == 2
    assert metric("ltgcast_model_version", role="shadow") == 0

    assert slot.check() == []  # seen: neither gated nor loaded again
    assert (doubles.gated, doubles.loads) == ([2], [1, 2])


def test_versions_there_at_start_are_left_alone(tmp_path: Path) -> None:
    repo, doubles = make_repo(tmp_path), Doubles()
    add_version(tmp_path)  # added, not promoted: what `ltgcast models add` leaves
    slot = make_slot(tmp_path, doubles)
    assert slot.check() == []
    assert (slot.current().stable.version, repo.current(NAME), doubles.gated) == (1, 1, [])


@pytest.mark.parametrize(
    ("card", "stage", "reason"),
    [
        ({"problems": ["golden batch: outputs must be finite in [0, 1]; found range [nan, nan]"]}, "gate",
         re.escape("gate: golden batch: outputs must be finite in [0, 1]; found range [nan, nan]")),
        ({"gate_crashes": True}, "gate", "gate: the validation failed to run: RuntimeError: no such signature"),
        ({"unloadable": True}, "load", "load: cannot load .*/lightning/2: OSError: .*saved_model.pb: truncated"),
        ({"value": float("nan")}, "warmup",
         re.escape("warm-up: non-finite output at 256 of 256 pixels of a zero input; expected finite in [0, 1]")),
        ({"value": 1.5}, "warmup", r"warm-up: output must be in \[0, 1\]; found range \[1.5, 1.5\]"),
    ],
    ids=["gate-problem", "gate-crash", "load", "warmup-nan", "warmup-range"],
)  # fmt: skip
def test_a_version_that_fails_is_rejected_and_the_models_kept(
    tmp_path: Path, card: dict[str, Any], stage: str, reason: str
) -> None:
    repo, doubles = make_repo(tmp_path), Doubles()
    slot = make_slot(tmp_path, doubles)
    kept = slot.current()
    rejections = metric("ltgcast_model_rejections_total", stage=stage)
    add_version(tmp_path, **{"value": 0.5, **card})

    (event,) = slot.check()
    assert (event.version, event.outcome, len(event.reasons)) == (2, "rejected", 1)
    assert re.fullmatch(reason, event.reasons[0]), event.reasons
    assert slot.current() is kept
    assert repo.current(NAME) == 1
    assert slot.status()["rejected"] == {"2": list(event.reasons)}
    assert metric("ltgcast_model_rejections_total", stage=stage) == rejections + 1

    gated, loads = list(doubles.gated), list(doubles.loads)
    assert slot.check() == []  # not retried while its folder is the same
    assert (doubles.gated, doubles.loads) == (gated, loads)


def test_warm_up_can_be_left_out(tmp_path: Path) -> None:
    make_repo(tmp_path)
    doubles = Doubles()
    slot = make_slot(tmp_path, doubles, warmup=False)  # for a backend that cannot score a version before promotion
    add_version(tmp_path, 1.5)
    assert slot.check() == [SwapEvent(2, "swapped", previous=1)]
    assert doubles.gated == [2]  # the gate still runs


def test_a_rejected_version_written_again_is_tried_again(tmp_path: Path) -> None:
    repo, doubles = make_repo(tmp_path), Doubles()
    slot = make_slot(tmp_path, doubles)
    add_version(tmp_path, problems=["dense and patch signatures disagree by 0.3"])
    assert [e.outcome for e in slot.check()] == ["rejected"]
    shutil.rmtree(repo.path(NAME, 2))
    assert add_version(tmp_path, 0.4) == 2  # the same number, a new folder

    assert slot.check() == [SwapEvent(2, "swapped", previous=1)]
    assert slot.status()["rejected"] == {}
    assert repo.current(NAME) == 2


def test_a_version_not_fully_written_waits_for_the_next_scan(tmp_path: Path) -> None:
    make_repo(tmp_path)
    slot = make_slot(tmp_path, Doubles())
    folder = tmp_path / NAME / "2"  # a writer that does not rename into place, half way through
    folder.mkdir()
    (folder / "model_card.json").write_text(json.dumps({"feature_set": "ir-ltg/1", "value": 0.2}))
    assert slot.check() == []
    (folder / "saved_model.pb").write_bytes(b"stand-in")
    assert slot.check() == [SwapEvent(2, "swapped", previous=1)]


def test_several_new_versions_are_vetted_oldest_first(tmp_path: Path) -> None:
    make_repo(tmp_path)
    doubles = Doubles()
    slot = make_slot(tmp_path, doubles)
    add_version(tmp_path, 0.2)
    add_version(tmp_path, float("nan"))
    assert [(e.version, e.outcome) for e in slot.check()] == [(2, "swapped"), (3, "rejected")]
    assert slot.current().stable.version == 2


# -- shadow mode ----------------------------------------------------------------------------------------------------
def test_shadow_mode_scores_a_candidate_beside_stable_until_promoted(tmp_path: Path) -> None:
    repo, doubles = make_repo(tmp_path), Doubles()
    slot = make_slot(tmp_path, doubles, shadow=True)
    add_version(tmp_path, 0.2)
    assert slot.check() == [SwapEvent(2, "shadowed", previous=None)]
    models = slot.current()
    assert (models.stable.version, models.shadow and models.shadow.version) == (1, 2)
    assert repo.current(NAME) == 1  # promotion is explicit in shadow mode
    assert metric("ltgcast_model_version", role="shadow") == 2

    add_version(tmp_path, 0.3)
    assert slot.check() == [SwapEvent(3, "shadowed", previous=2)]
    candidate = slot.current().shadow
    assert candidate is not None
    result = slot.promote(3, reason="better CSI in shadow")
    assert result == {"name": NAME, "outcome": "promoted", "stable": 3, "previous": 1, "shadow": None,
                      "reason": "better CSI in shadow"}  # fmt: skip
    assert slot.current() == ServingModels(candidate)
    assert slot.current().stable is candidate  # neither gated nor loaded a second time
    assert (doubles.gated, doubles.loads) == ([2, 3], [1, 2, 3])
    assert repo.state(NAME)["history"][-1] == {**repo.state(NAME)["history"][-1], "version": 3,
                                               "reason": "better CSI in shadow"}  # fmt: skip
    assert slot.check() == []


def test_a_cli_promotion_of_the_shadow_makes_it_stable(tmp_path: Path) -> None:
    repo, doubles = make_repo(tmp_path), Doubles()
    slot = make_slot(tmp_path, doubles, shadow=True)
    add_version(tmp_path, 0.2)
    slot.check()
    shadow = slot.current().shadow
    repo.promote(NAME, 2, reason="by hand")  # what `ltgcast models promote --version 2` writes
    assert slot.check() == [SwapEvent(2, "followed", previous=1)]
    assert slot.current().stable is shadow
    assert slot.current().shadow is None
    assert doubles.loads == [1, 2]


# -- following the CLI ----------------------------------------------------------------------------------------------
def test_promotions_and_rollbacks_made_with_the_cli_are_followed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ltgcast.cli import main

    repo, doubles = make_repo(tmp_path), Doubles()
    add_version(tmp_path, 0.6)
    slot = make_slot(tmp_path, doubles)
    followed = metric("ltgcast_model_swaps_total", outcome="followed")

    repo.promote(NAME, 2, reason="by hand")  # `ltgcast models promote` after its own gate
    assert slot.check() == [SwapEvent(2, "followed", previous=1)]
    assert slot.current().stable.version == 2
    assert doubles.gated == []  # the CLI gates promotions; the service does not gate them again

    assert main(["models", "rollback", "--base", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"name": NAME, "current": 1}
    assert slot.check() == [SwapEvent(1, "followed", previous=2)]
    assert slot.current().stable.version == 1
    assert doubles.loads == [1, 2, 1]
    assert metric("ltgcast_model_swaps_total", outcome="followed") == followed + 2
    assert slot.check() == []


def test_a_followed_version_that_fails_warm_up_is_rejected_and_not_served(tmp_path: Path) -> None:
    repo, doubles = make_repo(tmp_path), Doubles()
    add_version(tmp_path, float("nan"))
    slot = make_slot(tmp_path, doubles)
    repo.promote(NAME, 2, reason="forced")
    (event,) = slot.check()
    assert (event.version, event.outcome) == (2, "rejected")
    assert slot.current().stable.version == 1
    status = slot.status()
    assert (status["stable"], status["repository_current"], list(status["rejected"])) == (1, 2, ["2"])
    assert doubles.loads == [1, 2]
    assert slot.check() == []  # not loaded again on every scan
    assert doubles.loads == [1, 2]


# -- explicit promote and rollback ----------------------------------------------------------------------------------
def test_promote_and_rollback_through_the_slot(tmp_path: Path) -> None:
    repo, doubles = make_repo(tmp_path), Doubles()
    add_version(tmp_path, 0.5)
    slot = make_slot(tmp_path, doubles)
    with pytest.raises(ModelRejected, match="no earlier promoted version to roll back to"):
        slot.rollback()
    with pytest.raises(ModelRejected, match=r"lightning has no version 7; versions: \[1, 2\]"):
        slot.promote(7)

    assert slot.promote(2)["stable"] == 2
    assert doubles.gated == [2]
    assert slot.promote(2)["outcome"] == "unchanged"
    assert len(repo.state(NAME)["history"]) == 2

    result = slot.rollback()
    assert (result["outcome"], result["stable"], result["previous"]) == ("rolled_back", 1, 2)
    assert (slot.current().stable.version, repo.current(NAME)) == (1, 1)
    assert repo.state(NAME)["history"][-1]["reason"] == "rollback from 2"
    assert slot.check() == []  # version 2 was seen: rolling back does not invite it back


def test_promoting_a_version_that_fails_the_gate_changes_nothing(tmp_path: Path) -> None:
    repo, doubles = make_repo(tmp_path), Doubles()
    add_version(tmp_path, problems=["serving_default: expected 2 channels, found 3"])
    slot = make_slot(tmp_path, doubles)
    with pytest.raises(ModelRejected, match="lightning v2 was not promoted: gate: serving_default: expected 2 chan"):
        slot.promote(2, reason="try")
    assert (slot.current().stable.version, repo.current(NAME)) == (1, 1)
    assert slot.status()["rejected"] == {"2": ["gate: serving_default: expected 2 channels, found 3"]}


def test_two_promotions_never_interleave(tmp_path: Path) -> None:
    repo, doubles = make_repo(tmp_path), Doubles()
    for value in (0.2, 0.3):
        add_version(tmp_path, value)
    slot = make_slot(tmp_path, doubles)
    inside, release = threading.Event(), threading.Event()
    entered: list[int] = []
    gate = doubles.gate

    def slow_gate(repo: ModelRepository, name: str, version: int) -> ValidationReport:
        entered.append(version)
        inside.set()
        release.wait(10)
        return gate(repo, name, version)

    slot._gate = slow_gate  # noqa: SLF001 -- hold the first promotion inside its gate
    first = threading.Thread(target=slot.promote, args=(2,))
    first.start()
    assert inside.wait(10)
    second = threading.Thread(target=slot.promote, args=(3,))
    second.start()
    second.join(0.05)
    assert second.is_alive()
    assert entered == [2]  # the second waits for the lock; it does not gate beside the first
    release.set()
    first.join(10)
    second.join(10)
    assert doubles.gated == [2, 3]
    assert [h["version"] for h in repo.state(NAME)["history"]] == [1, 2, 3]
    assert slot.current().stable.version == 3


# -- construction, status, the watcher thread -----------------------------------------------------------------------
def test_a_slot_needs_a_servable_current_version(tmp_path: Path) -> None:
    with pytest.raises(ModelRejected, match="no version of 'lightning' to serve under"):
        ModelSlot(tmp_path, NAME, Doubles().load)
    repo = ModelRepository(tmp_path)
    repo.promote(NAME, add_version(tmp_path, float("nan")), reason="first")
    with pytest.raises(ModelRejected, match="cannot serve lightning v1 .*: warm-up: non-finite output"):
        ModelSlot(tmp_path, NAME, Doubles().load)


def test_status_says_what_is_served_rejected_and_when_last_checked(tmp_path: Path) -> None:
    make_repo(tmp_path)
    clock = FakeClock(START)
    doubles = Doubles()
    slot = ModelSlot(tmp_path, NAME, doubles.load, HotSwapSettings(shadow=True), doubles.gate, clock=clock)
    assert slot.status()["last_check"] is None
    add_version(tmp_path, 0.2)
    add_version(tmp_path, problems=["golden batch: outputs must be finite in [0, 1]; found range [nan, nan]"])
    clock.advance(30)
    slot.check()
    status = slot.status()
    assert status == {
        "name": NAME,
        "stable": 1,
        "shadow": 2,
        "shadow_mode": True,
        "repository_current": 1,
        "rejected": {"3": ["gate: golden batch: outputs must be finite in [0, 1]; found range [nan, nan]"]},
        "last_check": "2024-06-15T18:00:30.000Z",
        "checks": 1,
        "check_errors": 0,
        "swaps": 1,
        "watching": False,
        "interval_s": 10.0,
    }
    assert json.loads(json.dumps(status)) == status


def test_a_failing_scan_does_not_stop_the_watcher(tmp_path: Path) -> None:
    make_repo(tmp_path)
    serving = tmp_path / NAME / "serving.json"
    good = serving.read_text()
    slot = make_slot(tmp_path, Doubles(), interval_s=0.01)
    serving.write_text("{not json")  # a scan now raises
    errors = metric("ltgcast_model_check_errors_total")
    with pytest.raises(ValueError, match="Expecting property name"):
        slot.check()
    slot.start()
    try:
        wait_until(lambda: slot.status()["check_errors"] >= 2, "two failed scans", limit_s=10.0, every_s=0.01)
        assert slot.status()["watching"]
        serving.write_text(good)
        add_version(tmp_path, 0.2)
        wait_until(lambda: slot.current().stable.version == 2, "version 2 swapped in", limit_s=10.0, every_s=0.01)
    finally:
        slot.stop()
    assert not slot.status()["watching"]
    assert metric("ltgcast_model_check_errors_total") >= errors + 2


def test_warm_up_refuses_a_grid_of_the_wrong_shape() -> None:
    class Flat(FakeScorer):
        def score(self, stacked: np.ndarray) -> np.ndarray:
            return np.zeros(stacked.shape[0], np.float32)

    with pytest.raises(ModelRejected, match=r"must give \[8, 8\]; found \[8\]"):
        warm_up(Flat(NAME, 1, 0.0), size=8)
    warm_up(FakeScorer(NAME, 1, 1.0), size=8)


# -- real SavedModels, the real gate, the embedded scorer -----------------------------------------------------------
@pytest.mark.slow
def test_real_versions_a_good_one_is_swapped_in_and_a_nan_one_rejected(model_base: Path, tmp_path: Path) -> None:
    base = tmp_path / "repo"
    shutil.copytree(model_base, base)
    repo = ModelRepository(base)
    slot = ModelSlot(base, NAME, lambda p: EmbeddedScorer(p, ScorerSettings()))
    first = slot.current().stable
    assert (first.version, slot.check()) == (1, [])

    assert export_test_model(repo, tmp_path / "v2", seed=12, behaved=True) == 2
    assert export_test_model(repo, tmp_path / "v3", seed=13, scale=float("nan")) == 3
    swapped, rejected = slot.check()
    assert swapped == SwapEvent(2, "swapped", previous=1)
    assert (rejected.version, rejected.outcome) == (3, "rejected")
    assert any("outputs must be finite in [0, 1]; found range [nan, nan]" in r for r in rejected.reasons)

    assert slot.current().stable.version == 2
    assert repo.current(NAME) == 2
    assert list(slot.status()["rejected"]) == ["3"]
    frame = np.random.default_rng(0).uniform(0, 1, (40, 50, 2)).astype(np.float32)
    new, old = slot.current().stable.score(frame), first.score(frame)
    assert np.isfinite(new).all()
    assert 0 <= new.min() <= new.max() <= 1
    assert float(np.abs(new - old).max()) > 1e-3  # a different model is served, not the old one renamed
    assert slot.check() == []


def test_a_replaced_scorer_is_closed_after_its_grace_and_every_retiree_at_stop(tmp_path: Path) -> None:
    make_repo(tmp_path)
    closed: list[int] = []

    class Closable(FakeScorer):
        def close(self) -> None:  # a TF Serving scorer closes its channel and request threads here
            closed.append(self.version)

    clock = FakeClock(START)

    def load(path: Path) -> FakeScorer:
        return Closable(NAME, int(path.name), 0.3)

    slot = ModelSlot(tmp_path, NAME, load, HotSwapSettings(retire_after_s=60.0), Doubles().gate, clock=clock)
    add_version(tmp_path, 0.5)
    slot.check()
    assert (slot.current().stable.version, closed) == (2, [])  # a frame may still be scored with v1
    clock.advance(30)
    slot.check()
    assert closed == []
    clock.advance(31)
    slot.check()
    assert closed == [1]
    add_version(tmp_path, 0.6)
    slot.check()
    slot.stop()  # closes what is retired, whatever the grace left
    assert closed == [1, 2]
