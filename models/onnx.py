"""The converted (ONNX) artefact of a model version: its file, how the model card vouches for it, and its runtimes.

:func:`models.export.convert_onnx` writes ``model.onnx`` beside the SavedModel and records in the card
(``card["onnx"]``) its SHA-256, the runtimes it was checked on and the largest probability difference against
TensorFlow measured there. :func:`verified_artefact` hands out the bytes only when the card vouches for them
(at most :data:`EXACT_TOLERANCE` on the runtime asked) and the bytes hash to the recorded value;
:func:`load_runner` turns them into a function on tiles. Every refusal is a
:class:`~foundation.errors.ArtefactUnavailable` with a bounded ``reason`` (:data:`FALLBACK_REASONS`).
The scorer that uses them is :class:`serve.scoring.onnx.ConvertedScorer`.

Nothing here imports TensorFlow; OpenVINO and ONNX Runtime are imported only when a runner is loaded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from foundation.errors import ArtefactUnavailable

F32 = NDArray[np.float32]

ONNX_FILE = "model.onnx"
CARD_KEY = "onnx"
#: Largest |probability difference| against TensorFlow that makes an artefact "exact".
EXACT_TOLERANCE = 1e-5
#: The largest model.onnx read (the committed ones are 118 and 148 KB): a repository file is not trusted.
MAX_ARTEFACT_BYTES = 64 * 2**20
#: Runtimes, fastest first on the 2-core AVX2 development machine (tiles of 512, two in flight).
RUNTIMES = ("onnxruntime", "openvino")
#: ``reason`` of ``ltgcast_scorer_fallback_total``: why a version is scored by TensorFlow instead.
FALLBACK_REASONS = ("missing", "unrecorded", "hash_mismatch", "not_exact", "no_runtime", "load_failed")


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_artefact(version_path: Path, card: dict[str, Any], runtime: str) -> bytes:
    """The bytes of a version's ``model.onnx``, once the card vouches for it on ``runtime`` and they hash to it.

    The bytes hashed are the bytes loaded (never the path again): a file swapped after the check is not used.
    """
    entry = card.get(CARD_KEY)
    path = version_path / ONNX_FILE
    if not path.is_file():
        msg = f"{version_path}: no {ONNX_FILE}"
        raise ArtefactUnavailable(msg, "missing")
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        msg = f"{path}: the model card records no sha256 for it"
        raise ArtefactUnavailable(msg, "unrecorded")
    size = path.stat().st_size
    if size > MAX_ARTEFACT_BYTES:
        msg = f"{path}: {size} bytes; expected at most {MAX_ARTEFACT_BYTES} for a converted model"
        raise ArtefactUnavailable(msg, "load_failed")
    data = path.read_bytes()
    found = hashlib.sha256(data).hexdigest()
    if found != entry["sha256"]:
        msg = f"{path}: sha256 {found[:12]}… does not match the card's {entry['sha256'][:12]}…"
        raise ArtefactUnavailable(msg, "hash_mismatch")
    checked = entry.get("max_abs_difference", {})
    difference = checked.get(runtime) if isinstance(checked, dict) else None
    if not isinstance(difference, int | float) or not difference <= EXACT_TOLERANCE:
        msg = f"{path}: the card records Δp {difference!r} on {runtime} (needs ≤ {EXACT_TOLERANCE:g})"
        raise ArtefactUnavailable(msg, "not_exact")
    return data


Runner = Callable[[F32], np.ndarray]  # tile [1, h, w, C] -> probability [1, h - 64, w - 64]


def _openvino(model: bytes | Path, threads: int) -> Runner:
    import openvino as ov

    core = ov.Core()
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads > 0:
        config["INFERENCE_NUM_THREADS"] = threads
    read = core.read_model(model, b"") if isinstance(model, bytes) else core.read_model(str(model))
    compiled = core.compile_model(read, "CPU", config)
    output = compiled.output(0)

    def run(tile: F32) -> np.ndarray:
        request = compiled.create_infer_request()  # one per call: tiles may run on several threads
        return np.asarray(request.infer([tile])[output])

    return run


def _onnxruntime(model: bytes | Path, threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(threads, 0)
    options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])

    def run(tile: F32) -> np.ndarray:
        return np.asarray(session.run(["probability"], {"tile": tile})[0])

    return run


_RUNTIMES: dict[str, Callable[[bytes | Path, int], Runner]] = {"openvino": _openvino, "onnxruntime": _onnxruntime}


def load_runner(model: bytes | Path, runtime: str, threads: int = 0) -> Runner:
    """A function scoring ``[N, h, w, C]`` tiles with ``runtime`` (:class:`ArtefactUnavailable` if it cannot).

    ``model`` is the ONNX file's verified bytes (:func:`verified_artefact`; external data cannot load from them)
    or, where the caller made the file itself (the export's check), its path.
    """
    if runtime not in _RUNTIMES:
        msg = f"unknown runtime {runtime!r}; valid: {', '.join(RUNTIMES)}"
        raise ValueError(msg)
    try:
        run = _RUNTIMES[runtime](model, threads)
    except ImportError as exc:
        msg = f"{runtime} is not installed: {exc}"
        raise ArtefactUnavailable(msg, "no_runtime") from exc
    except Exception as exc:  # a runtime that cannot read the file: the caller falls back
        msg = f"{runtime} cannot load the model: {exc}"
        raise ArtefactUnavailable(msg, "load_failed") from exc
    return run
