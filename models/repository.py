"""The model repository: ``BASE/<name>/<version>/`` as TensorFlow Serving reads it, plus what we add.

Layout::

    BASE/<name>/<version>/saved_model.pb, variables/     the SavedModel (integer versions)
    BASE/<name>/<version>/model_card.json                 feature set, scaling, data, metrics, drift reference
    BASE/<name>/<version>/model.onnx                      serving_default converted (optional; card field ``onnx``)
    BASE/<name>/<version>/assets.extra/tf_serving_warmup_requests
                                                          one PredictRequest TF Serving replays at load
    BASE/<name>/serving.json                              {"current": v, "history": [...]} — promote/rollback
    BASE/models.config                                    TF Serving model config pinning each current version

A version is written under a temporary name and renamed into place, so a
half-written version is never visible; versions are never overwritten.
Promotion changes only ``serving.json`` and ``models.config``: TF Serving and
the embedded scorer serve the *current* version, not simply the newest.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from foundation.errors import ModelRejected
from foundation.files import atomic_write_text
from foundation.utc import iso_utc

# TensorFlow (and Keras) are imported where a SavedModel is written, not here: the service reads the repository
# (ModelSlot) and scores a converted model without them.
HALO = 32  # pixels of context on each side of a tile (models.architectures.HALO)

WARMUP = Path("assets.extra") / "tf_serving_warmup_requests"


def warmup_record(channels: int, size: int = 16) -> bytes:
    """A serialized ``PredictionLog`` with one ``serving_default`` request (a zero tile)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = "serving_default"
    tile = np.zeros((1, size + 2 * HALO, size + 2 * HALO, channels), np.float32)
    request.inputs["tile"].CopyFrom(tf.make_tensor_proto(tile))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    return bytes(log.SerializeToString())


#: Card fields :meth:`ModelRepository.annotate` may set on an existing version. ``onnx`` vouches for a
#: converted artefact written later (``ltgcast models convert``); it is derived from the SavedModel and the
#: validation gate re-checks its hash and its agreement with the SavedModel.
ANNOTATIONS = frozenset({"drift_thresholds", "onnx"})


class ModelRepository:
    """Versions of named models under one base folder."""

    def __init__(self, base: Path, serving_root: str = "/models") -> None:
        self.base = base
        self.serving_root = serving_root.rstrip("/")  # where TF Serving sees ``base`` (the image mounts it at /models)

    def names(self) -> list[str]:
        """Model names (folders holding at least one integer version)."""
        if not self.base.is_dir():
            return []
        return sorted(p.name for p in self.base.iterdir() if p.is_dir() and self.versions(p.name))

    def versions(self, name: str) -> list[int]:
        """Integer versions of ``name``, ascending."""
        folder = self.base / name
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())

    def path(self, name: str, version: int) -> Path:
        """Folder of one version."""
        return self.base / name / str(version)

    def card(self, name: str, version: int) -> dict[str, Any]:
        """The version's model card."""
        card: dict[str, Any] = json.loads((self.path(name, version) / "model_card.json").read_text(encoding="utf-8"))
        return card

    def annotate(self, name: str, version: int, key: str, value: Any) -> None:
        """Set one monitoring field of a version's card (e.g. ``drift_thresholds``), atomically.

        Only what describes how the model is watched may change after ``add``: the weights, signatures,
        scaling and reference a version was validated with never do.
        """
        if key not in ANNOTATIONS:
            msg = f"model card field {key!r} cannot be changed after add; changeable: {', '.join(sorted(ANNOTATIONS))}"
            raise ModelRejected(msg)
        card = {**self.card(name, version), key: value}
        _write_json(self.path(name, version) / "model_card.json", card)

    def state(self, name: str) -> dict[str, Any]:
        """``serving.json``: the current version and the promotion history."""
        path = self.base / name / "serving.json"
        if path.is_file():
            doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return doc
        versions = self.versions(name)
        return {"current": versions[-1] if versions else None, "history": []}

    def current(self, name: str) -> int | None:
        """The version being served."""
        current = self.state(name)["current"]
        return int(current) if current is not None else None

    def add(self, name: str, saved_model: Path, card: dict[str, Any], channels: int) -> int:
        """Move a written SavedModel in as the next version, with its card and warm-up request."""
        import tensorflow as tf

        version = (self.versions(name) or [0])[-1] + 1
        staging = self.base / name / f".incoming-{version}"
        (self.base / name).mkdir(parents=True, exist_ok=True)
        shutil.move(str(saved_model), staging)
        (staging / WARMUP).parent.mkdir(parents=True, exist_ok=True)
        with tf.io.TFRecordWriter(str(staging / WARMUP)) as writer:
            writer.write(warmup_record(channels))
        card = {**card, "name": name, "version": version, "created": iso_utc(datetime.now(UTC))}
        (staging / "model_card.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
        os.rename(staging, self.path(name, version))
        return version

    def promote(self, name: str, version: int, *, reason: str = "") -> None:
        """Serve ``version`` from now on (recorded in the history)."""
        if version not in self.versions(name):
            msg = f"{name} has no version {version}; versions: {self.versions(name)}"
            raise ModelRejected(msg)
        state = self.state(name)
        history = [*state["history"], {"version": version, "at": iso_utc(datetime.now(UTC)), "reason": reason}]
        self._write_state(name, {"current": version, "history": history})

    def rollback(self, name: str) -> int:
        """Serve the version promoted before the current one; return it."""
        history = self.state(name)["history"]
        if len(history) < 2:
            msg = f"{name} has no earlier promoted version to roll back to"
            raise ModelRejected(msg)
        previous = int(history[-2]["version"])
        self.promote(name, previous, reason=f"rollback from {history[-1]['version']}")
        return previous

    def _write_state(self, name: str, state: dict[str, Any]) -> None:
        _write_json(self.base / name / "serving.json", state)
        self._write_tfserving_config()

    def _write_tfserving_config(self) -> None:
        entries = []
        for name in self.names():
            current = self.current(name)
            entries.append(
                "  config {\n"
                f'    name: "{name}"\n'
                f'    base_path: "{self.serving_root}/{name}"\n'
                '    model_platform: "tensorflow"\n'
                f"    model_version_policy {{ specific {{ versions: {current} }} }}\n"
                "  }\n"
            )
        # TF Serving polls this file: it must never see a half-written one
        atomic_write_text(self.base / "models.config", "model_config_list {\n" + "".join(entries) + "}\n")


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    """Replace ``path`` with ``doc`` atomically: readers see the old file or the new one, never a part."""
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
