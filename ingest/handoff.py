"""One decode per file: what the ingest daemon read, handed to the worker of the same process.

The ingest daemon reads every file it vets, whole, in a bounded child process (:mod:`ingest.sandbox`),
because only a full read can refuse a frame without enough valid pixels (stage ``empty``) or with corrupt
data blocks, before it is announced. In the embedded service (``ltgcast run``: daemon and worker in one
process) the product read crosses back from the child and waits here, keyed by the file's path, size and
modification time; the worker's read (:meth:`DecodedFiles.read`) takes it instead of reading the file
again. A file that changed since (another size or time), or one never handed over (a restart, a frame
read again as a predecessor), is read from disk as before: the handoff can save a read, never change
what is read.

Bounded: at most ``max_bytes`` of products wait (oldest dropped first, counted), since the worker may
never ask for a file it does not want. ``ltgcast_decode_handoff_total{outcome}`` counts ``taken``
(a read saved), ``read`` (read from disk) and ``dropped`` (evicted unread).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import Counter

from ingest.abi import AbiImage
from ingest.glm import GlmGranule
from ingest.readers import read_product

log = logging.getLogger(__name__)

HANDOFF = Counter(
    "ltgcast_decode_handoff",
    "Files the worker took decoded from the ingest daemon (taken), read from disk (read), or that waited "
    "unread until evicted (dropped)",
    ["outcome"],
)
for _outcome in ("taken", "read", "dropped"):
    HANDOFF.labels(_outcome)

Product = AbiImage | GlmGranule
#: The key of a file: its resolved path, size and modification time (ns).
Key = tuple[str, int, int]


def product_bytes(product: Product) -> int:
    """The bytes of a product's arrays: what keeping it for the worker costs."""
    if isinstance(product, AbiImage):
        return int(product.values.nbytes)
    parts = (product.flashes, product.groups, product.events)
    return sum(int(array.nbytes) for part in parts for f in fields(part)
               if isinstance(array := getattr(part, f.name), np.ndarray))  # fmt: skip


class DecodedFiles:
    """Products the daemon read, waiting for the worker; a drop-in for :func:`~ingest.readers.read_product`."""

    def __init__(self, max_bytes: int = 512 * 2**20, read: Callable[[Path], Any] = read_product) -> None:
        self.max_bytes = max_bytes
        self._read = read
        self._waiting: OrderedDict[str, tuple[Key, Product, int]] = OrderedDict()  # by resolved path
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def key(path: str | Path) -> Key | None:
        """``(resolved path, size, mtime_ns)`` of a file, or ``None`` when it cannot be looked at."""
        try:
            resolved = Path(path).resolve()
            stat = resolved.stat()
        except OSError:
            return None
        return str(resolved), stat.st_size, stat.st_mtime_ns

    def put(self, path: str | Path, product: Product, *, read_as: Key | None = None) -> None:
        """Keep ``product``, read from ``path``, for the worker.

        ``read_as`` is the file's key taken before it was read: a file that changed while it was read (another
        size or modification time now) is not kept, so the worker reads what is on disk.
        """
        key = self.key(path)
        size = product_bytes(product)
        if key is None or size > self.max_bytes or (read_as is not None and read_as != key):
            return
        with self._lock:
            self._drop(key[0])  # an older read of the same file
            self._waiting[key[0]] = (key, product, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, _, dropped) = self._waiting.popitem(last=False)
                self._bytes -= dropped
                HANDOFF.labels("dropped").inc()

    def read(self, path: Path) -> Any:
        """The product the daemon read from ``path``, if the file is unchanged since; else read it now."""
        key = self.key(path)
        with self._lock:
            waiting = self._drop(key[0]) if key is not None else None
        if waiting is not None and waiting[0] == key:
            HANDOFF.labels("taken").inc()
            return waiting[1]
        HANDOFF.labels("read").inc()  # never handed over, or the file changed since: what is on disk now
        return self._read(path)

    def _drop(self, path: str) -> tuple[Key, Product, int] | None:
        """Forget what waits for ``path`` (the lock is held)."""
        waiting = self._waiting.pop(path, None)
        if waiting is not None:
            self._bytes -= waiting[2]
        return waiting

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)
