"""TensorFlow's start-up noise kept off stderr, unless an operator asks for it.

TensorFlow's C++ side writes a handful of lines to stderr whenever a process
loads it (``Could not find cuda drivers``, ``failed call to cuInit``, the CPU
feature notice, ``All log messages before absl::InitializeLog()``), on every
machine without a GPU, at every start. :func:`quiet_tensorflow` silences them:

* ``TF_CPP_MIN_LOG_LEVEL=3`` (only fatal errors) for what TensorFlow logs once
  its logging is set up (``failed call to cuInit`` comes then, at the first op);
* the lines written while the shared libraries load, before that set-up, are
  caught: the first ``import tensorflow`` runs with file descriptor 2 in a
  temporary file, and what was written meanwhile goes back to stderr without
  the lines matching :data:`NOISE` (another thread's log lines are kept, only
  delayed until the import ends);
* the ``tensorflow`` and ``absl`` Python loggers at ``ERROR``.

A variable the operator set already (``TF_CPP_MIN_LOG_LEVEL=0``) is left as it
is. ``ltgcast --tf-logs`` (or ``LTGCAST_TF_LOGS=1``) skips all of this. The CLI
calls it once, before any command can import TensorFlow.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from types import ModuleType

#: Lines of TensorFlow's start-up dropped from stderr (anything else written meanwhile is kept).
NOISE = re.compile(
    r"absl::InitializeLog|cudart_stub\.cc|cuda_platform\.cc|cuda_dnn\.cc|cuda_fft\.cc|cuda_blas\.cc"
    r"|cpu_feature_guard\.cc|To enable the following instructions|oneDNN custom operations"
    r"|computation_placer\.cc|TF-TRT Warning"
)


def quiet_tensorflow(environ: MutableMapping[str, str]) -> None:
    """Keep TensorFlow's C++ and CUDA start-up lines off stderr in this process and its children.

    Parameters
    ----------
    environ : MutableMapping[str, str]
        The process environment (``os.environ``): ``TF_CPP_MIN_LOG_LEVEL`` is set there unless already set.
    """
    environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as the path finder does, and runs its first import under :func:`_stderr_filtered`."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        """The spec of ``tensorflow`` with a quiet loader; ``None`` (not mine) for any other module."""
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: later imports are plain
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        """The wrapped loader's module."""
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        """Run the wrapped loader with stderr filtered."""
        with _stderr_filtered():
            self.loader.exec_module(module)


@contextmanager
def _stderr_filtered() -> Iterator[None]:
    """File descriptor 2 into a temporary file meanwhile; then its lines, less :data:`NOISE`, to stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                capture.seek(0)
                lines = capture.read().decode("utf-8", "replace").splitlines(keepends=True)
                kept = "".join(line for line in lines if not NOISE.search(line))
                if kept:
                    os.write(2, kept.encode("utf-8"))
    finally:
        os.close(saved)
