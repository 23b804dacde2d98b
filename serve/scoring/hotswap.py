"""Hot-swap of model versions in the running service, and shadow mode.

A :class:`ModelSlot` holds the models the worker scores with, as one frozen
:class:`ServingModels` (``stable``, and a ``shadow`` candidate in shadow mode).
The worker reads :meth:`ModelSlot.current` once per frame; every change replaces
that one reference, so a frame is never scored with a half-swapped pair.

What one :meth:`ModelSlot.check` (the watcher thread's scan) does:

1. **Follow the repository.** When ``serving.json``'s current version differs
   from the stable one (a modeller ran ``ltgcast models promote`` or
   ``rollback``), that version is loaded, warmed up and swapped in
   (``followed``); if it is the shadow, the shadow becomes stable. The gate is
   not run again: the CLI's ``promote`` runs it, and a rollback goes back to a
   version that was served before.
2. **Vet new versions**, oldest first. A version is new when its number is
   above every version seen (versions present when the slot started count as
   seen: they were left unpromoted on purpose). It must be fully written
   (``saved_model.pb`` and ``model_card.json``; a version still missing them is
   looked at again on the next scan). It passes the gate
   (:func:`models.validation.validate` by default), is loaded and warmed up (a
   zero input of the model's channels must give a finite grid in [0, 1]), and
   then becomes the shadow (``settings.shadow``: promotion is then explicit,
   :meth:`ModelSlot.promote`) or the stable model, recorded in ``serving.json``
   with ``reason="hot-swap: passed the gate"`` (``swapped``).
3. **Reject** a version that fails the gate, does not load or fails warm-up:
   its reasons stay in :meth:`ModelSlot.status`, it is logged and counted, and
   the service keeps its models. A rejected version is not tried again, by the
   scan or by following ``serving.json``, until its folder changes (deleted and
   written again under the same number: a new folder or a new
   ``saved_model.pb``). An explicit :meth:`ModelSlot.promote` always runs the
   gate again for a version that has not passed it.

A scorer that a change leaves out (the old stable, a replaced shadow) is
**retired**: closed (a TF Serving scorer's channel and request threads) once
``retire_after_s`` has passed, long enough for a frame scored with it to end,
at the next scan or change, and at :meth:`ModelSlot.stop`. A version served
again later is loaded afresh.

Every change of models (scan, promote, rollback) happens under one lock, so two
promotions never interleave; :meth:`ModelSlot.current` and
:meth:`ModelSlot.status` never wait for it.

Metrics (module scope; labels bounded by the constants below):
``ltgcast_model_swaps_total{outcome}``, ``ltgcast_model_rejections_total{stage}``,
``ltgcast_model_version{role}`` (0: no model in that role),
``ltgcast_model_check_errors_total`` and
``ltgcast_model_last_check_timestamp_seconds``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from foundation.clock import Clock, SystemClock
from foundation.errors import ModelRejected
from foundation.settings import check_numbers
from foundation.utc import iso_utc
from monitor import metrics
from serve.scoring import Scorer

if TYPE_CHECKING:
    from datetime import datetime

    from models.repository import ModelRepository
    from models.validation import ValidationReport

log = logging.getLogger(__name__)

Gate = Callable[["ModelRepository", str, int], "ValidationReport"]

OUTCOMES = ("swapped", "shadowed", "followed", "promoted", "rolled_back", "rejected")
STAGES = GATE, LOAD, WARMUP = ("gate", "load", "warmup")
ROLES = ("stable", "shadow")
GATE_REASON = "hot-swap: passed the gate"


@dataclass(frozen=True)
class ServingModels:
    """The models one frame is scored with; replaced whole, never changed in place."""

    stable: Scorer  # the version every grid is made with
    shadow: Scorer | None = None  # a candidate scored beside it, when shadow mode is on


@dataclass(frozen=True)
class HotSwapSettings:
    """How the slot watches the base path and vets versions."""

    interval_s: float = 10.0  # how often the watcher thread checks the base path
    shadow: bool = False  # a new version that passes the gate becomes the shadow, not stable
    warmup: bool = True  # score a zero input before serving; False for a backend that cannot reach a version yet
    warmup_size: int = 16  # output pixels per side of the zero warm-up input
    holdout: Path | None = None  # the default gate's held-out dataset (skill check); None: no skill check
    margin: float = 0.02  # the default gate's allowed loss of Brier skill against the current version
    stop_timeout_s: float = 30.0  # how long stop() waits for a scan in progress
    retire_after_s: float = 120.0  # a replaced scorer is closed this long after the swap (a frame may still use it)

    def __post_init__(self) -> None:
        check_numbers(self, positive=("interval_s", "stop_timeout_s"), non_negative=("margin", "retire_after_s"),
                      counts=("warmup_size",))  # fmt: skip


@dataclass(frozen=True)
class SwapEvent:
    """What a scan did with one version."""

    version: int
    outcome: str  # one of OUTCOMES
    previous: int | None = None  # the stable (swapped, followed) or shadow (shadowed) version it replaced
    reasons: tuple[str, ...] = ()  # why it was rejected


@dataclass(frozen=True)
class _Rejection:
    stage: str
    reasons: tuple[str, ...]
    signature: tuple[int, ...]


class _Refused(ModelRejected):
    """A version failed a stage; carries the stage and the reasons."""

    def __init__(self, stage: str, reasons: tuple[str, ...]) -> None:
        super().__init__("; ".join(reasons))
        self.stage, self.reasons = stage, reasons


def default_gate(holdout: Path | None = None, margin: float = 0.02) -> Gate:
    """:func:`models.validation.validate` (TensorFlow is imported on the first call, not here)."""

    def gate(repo: ModelRepository, name: str, version: int) -> ValidationReport:
        from models.validation import validate

        return validate(repo, name, version, holdout=holdout, margin=margin)

    return gate


def warm_up(scorer: Scorer, size: int = 16) -> None:
    """Score a zero input ``[size, size, C]``; raise :class:`ModelRejected` unless the grid is finite in [0, 1]."""
    channels = len(scorer.feature_set.channels)
    out = np.asarray(scorer.score(np.zeros((size, size, channels), np.float32)))
    if out.shape != (size, size):
        msg = f"warm-up: a [{size}, {size}, {channels}] input must give [{size}, {size}]; found {list(out.shape)}"
        raise ModelRejected(msg)
    bad = int(np.count_nonzero(~np.isfinite(out)))
    if bad:
        msg = f"warm-up: non-finite output at {bad} of {out.size} pixels of a zero input; expected finite in [0, 1]"
        raise ModelRejected(msg)
    if out.min() < 0 or out.max() > 1:
        msg = f"warm-up: output must be in [0, 1]; found range [{float(out.min()):g}, {float(out.max()):g}]"
        raise ModelRejected(msg)


def _complete(path: Path) -> bool:
    return (path / "saved_model.pb").is_file() and (path / "model_card.json").is_file()


#: The files of a version whose change means the gate must look at it again.
_VETTED_FILES = ("saved_model.pb", "model_card.json", "model.onnx")


def _signature(path: Path) -> tuple[int, ...]:
    """Identity of a version folder; it changes when the folder, its graph, card or converted model is replaced.

    A folder written again under the same number, or ``models convert`` (or anyone) replacing a file in it,
    makes the gate look at the version again.
    """
    try:
        folder = path.stat()
    except OSError:
        return ()
    identity = [folder.st_ino, folder.st_mtime_ns]
    for name in _VETTED_FILES:
        try:
            stat = (path / name).stat()
        except FileNotFoundError:
            identity += [0, 0]  # model.onnx is optional
            continue
        except OSError:
            return ()
        identity += [stat.st_ino, stat.st_mtime_ns]
    return tuple(identity)


def _version(scorer: Scorer | None) -> int | None:
    return None if scorer is None else scorer.version


class ModelSlot:
    """The served model of one name in a repository, swapped while the service runs.

    Parameters
    ----------
    base
        The model repository's base path (``BASE/<name>/<version>/``).
    name
        The model name.
    load
        Turns a version folder into a scorer (e.g. ``lambda p: get_scorer(p, settings)``).
    settings
        Interval, shadow mode, warm-up size, the default gate's hold-out.
    gate
        The validation gate; default :func:`models.validation.validate`.
    clock
        Wall time for ``status()``; default the system clock.
    """

    def __init__(self, base: Path, name: str, load: Callable[[Path], Scorer], settings: HotSwapSettings | None = None,
                 gate: Gate | None = None, *, clock: Clock | None = None) -> None:  # fmt: skip
        from models.repository import ModelRepository

        self.name = name
        self.settings = settings or HotSwapSettings()
        self.repository = ModelRepository(base)
        self._load = load
        self._gate = gate or default_gate(self.settings.holdout, self.settings.margin)
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rejected: dict[int, _Rejection] = {}  # replaced, never mutated: status() reads it without the lock
        self._passed: dict[int, tuple[int, ...]] = {}  # versions that passed the gate, with their folder signature
        self._last_check: datetime | None = None
        self._retired: list[tuple[float, Scorer]] = []  # (when to close it, the scorer a swap left out)
        self._checks = self._errors = self._swaps = 0
        self._repository_current = self.repository.current(name)
        self._seen = max(self.repository.versions(name), default=0)
        if self._repository_current is None:
            msg = f"no version of {name!r} to serve under {base}: serving.json names none and there are no versions"
            raise ModelRejected(msg)
        try:
            stable = self._ready(self._repository_current, self.repository.path(name, self._repository_current))
        except _Refused as refused:
            msg = f"cannot serve {name} v{self._repository_current} (serving.json's current): {refused}"
            raise ModelRejected(msg) from refused
        self._models = ServingModels(stable)
        for outcome in OUTCOMES:  # every outcome and stage is a series from the start: 0, never absent
            metrics.MODEL_SWAPS.labels(outcome)
        for stage in STAGES:
            metrics.MODEL_REJECTIONS.labels(stage)
        self._publish_versions()

    # -- what the worker and the API read --------------------------------------------------------------------------
    def current(self) -> ServingModels:
        """The models to score the next frame with (one attribute read: never a half-swapped pair)."""
        return self._models

    def status(self) -> dict[str, Any]:
        """JSON-able state: versions, rejections (keys are version strings), scan counts and time."""
        models, rejected, last = self._models, self._rejected, self._last_check
        return {
            "name": self.name,
            "stable": models.stable.version,
            "shadow": _version(models.shadow),
            "shadow_mode": self.settings.shadow,
            "repository_current": self._repository_current,
            "rejected": {str(v): list(r.reasons) for v, r in sorted(rejected.items())},
            "last_check": iso_utc(last) if last is not None else None,
            "checks": self._checks,
            "check_errors": self._errors,
            "swaps": self._swaps,
            "watching": self._thread is not None and self._thread.is_alive(),
            "interval_s": self.settings.interval_s,
        }

    # -- the scan --------------------------------------------------------------------------------------------------
    def check(self) -> list[SwapEvent]:
        """One scan of the base path: follow ``serving.json``, then vet new versions (module docstring)."""
        with self._lock:
            events = []
            self._repository_current = current = self.repository.current(self.name)
            if current is not None:
                events.extend(self._follow(current))
            for version in self._new_versions(self.repository.versions(self.name)):
                events.append(self._adopt(version))
            self._last_check = self._clock.now()
            self._checks += 1
            self._close_retired()
        metrics.MODEL_LAST_CHECK.set(self._last_check.timestamp())
        return events

    def _follow(self, version: int) -> list[SwapEvent]:
        models = self._models
        if version == models.stable.version or self._blocked(version):
            return []
        try:
            scorer = self._vet(version, gate=False)
        except _Refused as refused:
            return [self._reject(version, refused)]
        shadow = None if version == _version(models.shadow) else models.shadow
        self._swap(ServingModels(scorer, shadow), "followed")
        self._seen = max(self._seen, version)
        log.info("hot-swap: %s follows serving.json to v%d (was v%d)", self.name, version, models.stable.version)
        return [SwapEvent(version, "followed", previous=models.stable.version)]

    def _new_versions(self, versions: list[int]) -> list[int]:
        """New versions, oldest first, up to the first one not fully written; rejected ones whose folder changed."""
        fresh = []
        for version in versions:
            path = self.repository.path(self.name, version)
            if version > self._seen:
                if not _complete(path):
                    log.debug("hot-swap: %s v%d is not fully written yet", self.name, version)
                    break
                fresh.append(version)
            elif version in self._rejected and not self._blocked(version) and _complete(path):
                fresh.append(version)
        return fresh

    def _adopt(self, version: int) -> SwapEvent:
        models = self._models
        try:
            scorer = self._vet(version, gate=True)
        except _Refused as refused:
            return self._reject(version, refused)
        if self.settings.shadow:
            self._swap(ServingModels(models.stable, scorer), "shadowed")
            event = SwapEvent(version, "shadowed", previous=_version(models.shadow))
        else:
            self.repository.promote(self.name, version, reason=GATE_REASON)
            self._repository_current = version
            self._swap(ServingModels(scorer), "swapped")
            event = SwapEvent(version, "swapped", previous=models.stable.version)
        self._seen = max(self._seen, version)
        self._forget(version)
        log.info("hot-swap: %s v%d passed the gate: %s (was v%s)", self.name, version, event.outcome, event.previous)
        return event

    # -- explicit actions ------------------------------------------------------------------------------------------
    def promote(self, version: int, reason: str = "") -> dict[str, Any]:
        """Serve ``version`` as stable: gate (unless passed), load, warm up, swap, record in ``serving.json``."""
        with self._lock:
            versions = self.repository.versions(self.name)
            if version not in versions:
                msg = f"{self.name} has no version {version}; versions: {versions}"
                raise ModelRejected(msg)
            models = self._models
            if version == models.stable.version and self.repository.current(self.name) == version:
                return self._result(models.stable.version, "unchanged", reason)
            try:
                scorer = self._vet(version, gate=True)
            except _Refused as refused:
                self._reject(version, refused)
                msg = f"{self.name} v{version} was not promoted: {refused}"
                raise ModelRejected(msg) from refused
            self.repository.promote(self.name, version, reason=reason or "promoted through the service")
            self._repository_current = version
            shadow = None if version == _version(models.shadow) else models.shadow
            self._swap(ServingModels(scorer, shadow), "promoted")
            self._seen = max(self._seen, version)
            self._forget(version)
        log.info("hot-swap: %s v%d promoted (was v%d): %s", self.name, version, models.stable.version, reason)
        return self._result(models.stable.version, "promoted", reason)

    def rollback(self) -> dict[str, Any]:
        """Serve the version promoted before the current one (:meth:`ModelRepository.rollback`), then swap to it."""
        with self._lock:
            history = self.repository.state(self.name)["history"]
            if len(history) < 2:
                msg = f"{self.name} has no earlier promoted version to roll back to"
                raise ModelRejected(msg)
            target, models = int(history[-2]["version"]), self._models
            try:
                scorer = self._vet(target, gate=False)  # loaded before serving.json changes: a failure changes nothing
            except _Refused as refused:
                self._reject(target, refused)
                msg = f"cannot roll {self.name} back to v{target}: {refused}"
                raise ModelRejected(msg) from refused
            self._repository_current = self.repository.rollback(self.name)
            shadow = None if target == _version(models.shadow) else models.shadow
            self._swap(ServingModels(scorer, shadow), "rolled_back")
        log.warning("hot-swap: %s rolled back from v%d to v%d", self.name, models.stable.version, target)
        return self._result(models.stable.version, "rolled_back", f"rollback from {models.stable.version}")

    # -- the watcher thread ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the watcher thread (a daemon scanning every ``interval_s``); a second call does nothing."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name=f"ltgcast-hotswap-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the watcher thread (a scan in progress is finished first, up to ``stop_timeout_s``); close retirees."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(self.settings.stop_timeout_s)
            if thread.is_alive():
                log.warning("hot-swap: the %s watcher did not stop within %ss", self.name, self.settings.stop_timeout_s)
        with self._lock:
            self._close_retired(everything=True)

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.interval_s):
            try:
                self.check()
            except Exception:  # one bad scan (unreadable serving.json, a full disk) must not end the watching
                self._errors += 1
                metrics.MODEL_CHECK_ERRORS.inc()
                log.exception("hot-swap: scanning %s for %s failed; trying again", self.repository.base, self.name)

    # -- steps -----------------------------------------------------------------------------------------------------
    def _vet(self, version: int, *, gate: bool) -> Scorer:
        """The version's scorer: gated (once per folder), then the one already loaded or a new one warmed up."""
        path = self.repository.path(self.name, version)
        if gate and self._passed.get(version) != _signature(path):
            self._run_gate(version, path)
        models = self._models
        for loaded in (models.stable, models.shadow):
            if loaded is not None and loaded.version == version:
                return loaded
        return self._ready(version, path)

    def _ready(self, version: int, path: Path) -> Scorer:
        """Load and warm up one version; raise :class:`_Refused` naming the stage that failed."""
        try:
            scorer = self._load(path)
        except Exception as exc:  # TensorFlow raises many kinds; each is a reason to refuse, not to crash
            msg = f"load: cannot load {path}: {type(exc).__name__}: {exc}"
            raise _Refused(LOAD, (msg,)) from exc
        if scorer.version != version:
            msg = f"load: {path} gave a scorer of version {scorer.version}, expected {version}"
            raise _Refused(LOAD, (msg,))
        if not self.settings.warmup:
            return scorer
        try:
            warm_up(scorer, self.settings.warmup_size)
        except ModelRejected as exc:
            raise _Refused(WARMUP, (str(exc),)) from exc
        except Exception as exc:
            msg = f"warm-up: scoring failed: {type(exc).__name__}: {exc}"
            raise _Refused(WARMUP, (msg,)) from exc
        return scorer

    def _run_gate(self, version: int, path: Path) -> None:
        signature = _signature(path)
        try:
            report = self._gate(self.repository, self.name, version)
        except Exception as exc:
            msg = f"gate: the validation failed to run: {type(exc).__name__}: {exc}"
            raise _Refused(GATE, (msg,)) from exc
        if not report.passed:
            raise _Refused(GATE, tuple(f"gate: {problem}" for problem in report.problems))
        self._passed[version] = signature

    def _reject(self, version: int, refused: _Refused) -> SwapEvent:
        path = self.repository.path(self.name, version)
        self._rejected = {**self._rejected, version: _Rejection(refused.stage, refused.reasons, _signature(path))}
        self._seen = max(self._seen, version)
        metrics.MODEL_SWAPS.labels("rejected").inc()
        metrics.MODEL_REJECTIONS.labels(refused.stage).inc()
        log.warning("hot-swap: %s v%d rejected at %s; keeping v%d: %s", self.name, version, refused.stage,
                    self._models.stable.version, "; ".join(refused.reasons))  # fmt: skip
        return SwapEvent(version, "rejected", reasons=refused.reasons)

    def _blocked(self, version: int) -> bool:
        """Rejected before, and its folder has not changed since."""
        rejection = self._rejected.get(version)
        return rejection is not None and rejection.signature == _signature(self.repository.path(self.name, version))

    def _forget(self, version: int) -> None:
        if version in self._rejected:
            self._rejected = {v: r for v, r in self._rejected.items() if v != version}

    def _swap(self, models: ServingModels, outcome: str) -> None:
        old, self._models = self._models, models  # the one write the worker can observe
        kept = {id(models.stable), id(models.shadow)}
        close_at = self._clock.monotonic() + self.settings.retire_after_s
        self._retired += [(close_at, s) for s in (old.stable, old.shadow) if s is not None and id(s) not in kept]
        self._close_retired()
        self._swaps += 1
        metrics.MODEL_SWAPS.labels(outcome).inc()
        self._publish_versions()

    def _close_retired(self, *, everything: bool = False) -> None:
        """Close the retired scorers whose grace has passed (all of them with ``everything``); hold the lock."""
        now, keep = self._clock.monotonic(), []
        for close_at, scorer in self._retired:
            if not everything and now < close_at:
                keep.append((close_at, scorer))
                continue
            close = getattr(scorer, "close", None)
            try:
                if close is not None:
                    close()
            except Exception:  # a scorer that fails to close must not stop the slot
                log.exception("hot-swap: closing retired %s v%d failed", scorer.name, scorer.version)
            else:
                log.info("hot-swap: closed retired %s v%d", scorer.name, scorer.version)
        self._retired = keep

    def _publish_versions(self) -> None:
        models = self._models
        metrics.MODEL_VERSION.labels("stable").set(models.stable.version)
        metrics.MODEL_VERSION.labels("shadow").set(_version(models.shadow) or 0)
        metrics.MODEL_INFO.clear()
        metrics.MODEL_INFO.labels("stable", str(models.stable.version)).set(1)
        if models.shadow is not None:
            metrics.MODEL_INFO.labels("shadow", str(models.shadow.version)).set(1)

    def _result(self, previous: int, outcome: str, reason: str) -> dict[str, Any]:
        models = self._models
        return {
            "name": self.name,
            "outcome": outcome,
            "stable": models.stable.version,
            "previous": previous,
            "shadow": _version(models.shadow),
            "reason": reason,
        }
