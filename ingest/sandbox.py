"""Checking untrusted files in a child process: a hostile file costs a child, never the daemon.

The HDF5 library under netCDF4 can loop forever or crash on a corrupted file, where no Python code runs
and nothing can interrupt it: the fuzz loop (:mod:`ltgcast.fuzzing`) found a byte-flipped GLM granule on
which opening never returns (HDF5 spins in ``H5HG__cache_heap_deserialize`` on a damaged global heap).
In the daemon's process such a file would also hold :data:`ingest.ncio.NETCDF_LOCK` for ever, stalling
every other reader there.

:func:`check_in_child` therefore reads a file with its product reader in a child forked from a fork
server that has imported the readers once (a check costs some 40 ms beyond the read), under an
address-space cap (:attr:`Isolation.memory_limit_mib`) and a time limit (:attr:`Isolation.timeout_s`).
The outcome comes back as the reader's own :class:`~foundation.errors.FrameDecodeError` (same stage, same
reason), or as a ``decode`` refusal naming the time limit, the memory cap or the child's exit code.
Flashes a GLM granule lost are counted and logged here, in the caller's process, as the reader would.
By default only the verdict crosses the pipe; with ``keep=True`` the product read crosses it too, so the
caller need not read the file a second time (the embedded service hands it to its worker,
:mod:`ingest.handoff`): one decode per file. The pipe carries what this module's own child sends (the
verdict has always been a pickle from it); the file's bytes never reach the caller's process.
"""

from __future__ import annotations

import logging
import multiprocessing
import resource
from dataclasses import dataclass
from functools import cache
from multiprocessing.connection import Connection
from pathlib import Path

from foundation.errors import FilenameError, FrameDecodeError, FrameEmptyError, FrameShapeError
from ingest.abi import MIN_VALID_SHARE, AbiImage
from ingest.glm import GlmGranule, report_dropped

#: Modules the fork server imports besides the readers (:func:`preload_in_checks`).
_PRELOAD: list[str] = []


def preload_in_checks(*modules: str) -> None:
    """Have the checks' fork server import ``modules`` once (call before the first check).

    Each child runs the parent's main script again before it starts (multiprocessing's main fix-up; the
    server's own ``__main__`` preload does not happen on Python 3.11), so a child of the ``ltgcast`` console
    script imported the whole CLI anew: 0.3–0.4 s a file. With the script's imports in the server, that run
    finds them loaded. :func:`ltgcast.cli.main` names ``ltgcast.cli``.
    """
    _PRELOAD.extend(m for m in modules if m not in _PRELOAD)


@cache
def _context() -> multiprocessing.context.ForkServerContext:
    """The fork server of the checks, set up on first use: its children start with the readers imported."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["ingest.readers", *_PRELOAD])
    return context


#: The exception each refusal stage is raised as in the caller.
_STAGE_ERRORS: dict[str, type[FrameDecodeError]] = {
    "decode": FrameDecodeError,
    "shape": FrameShapeError,
    "empty": FrameEmptyError,
    "name": FilenameError,
}


@dataclass(frozen=True)
class Isolation:
    """Bounds of one check in a child process.

    ``memory_limit_mib`` caps the child's address space: reading the largest product accepted (a 0.5-km
    full disk) peaked at 2253 MiB of address space and took 19.5 s here (see :mod:`ingest.abi`, "Memory").
    """

    timeout_s: float = 60.0
    memory_limit_mib: int = 4096


def check_in_child(
    path: str | Path,
    *,
    min_valid_share: float = MIN_VALID_SHARE,
    isolation: Isolation | None = None,
    keep: bool = False,
) -> AbiImage | GlmGranule | None:
    """Read ``path`` with its product reader in a bounded child process; the product (``keep``) or ``None``.

    Raises
    ------
    FrameDecodeError
        The reader's own refusal (same class, stage and reason), or a ``decode`` refusal when the
        child ran past the time limit, ran out of its memory cap, or died.
    """
    bounds = isolation or Isolation()
    context = _context()
    receiver, sender = context.Pipe(duplex=False)
    limit = bounds.memory_limit_mib * 2**20
    child = context.Process(
        target=_read_in_child,
        args=(sender, str(path), min_valid_share, limit, keep),
        daemon=True,
        name="ltgcast-check",
    )
    child.start()
    sender.close()
    try:
        verdict = _await(receiver, child, str(path), bounds)
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receiver.close()
        child.close()
    stage, reason, dropped, kept, product = verdict
    if stage is not None:
        raise _STAGE_ERRORS.get(stage, FrameDecodeError)(str(path), reason)
    report_dropped(path, dropped, kept)
    return product


Verdict = tuple[str | None, str, dict[str, int], int, AbiImage | GlmGranule | None]


def _await(receiver: Connection, child: multiprocessing.process.BaseProcess, path: str, bounds: Isolation) -> Verdict:
    """The child's verdict, or a refusal when it overran or died."""
    if not receiver.poll(bounds.timeout_s):
        msg = (
            f"reading did not finish within {bounds.timeout_s:g} s and was stopped "
            "(a corrupt HDF5 structure can make the library loop)"
        )
        raise FrameDecodeError(path, msg)
    try:
        return receiver.recv()  # type: ignore[no-any-return]
    except EOFError:
        child.join(timeout=5)
        msg = f"the reading process died (exit code {child.exitcode}): the file crashed the HDF5 library"
        raise FrameDecodeError(path, msg) from None


def _read_in_child(sender: Connection, path: str, min_valid_share: float, limit: int, keep: bool) -> None:
    """The child: cap the address space, read once, send ``(stage, reason, dropped, kept, product)`` back."""
    from ingest.readers import read_product  # already imported by the fork server

    logging.disable(logging.CRITICAL)  # the caller logs; here a log line would go to the fork server's stderr
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    limit = limit if hard == resource.RLIM_INFINITY else min(limit, hard)  # never above a cap set around us
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        product = read_product(path, min_valid_share=min_valid_share)
        dropped = dict(product.flashes_dropped) if isinstance(product, GlmGranule) else {}
        kept = len(product.flashes) if isinstance(product, GlmGranule) else 0
        verdict: Verdict = (None, "", dropped, kept, product if keep else None)
    except FrameDecodeError as exc:
        verdict = (exc.stage, exc.reason, {}, 0, None)
    except MemoryError:
        verdict = ("decode", f"reading needed more than the {limit >> 20} MiB of memory allowed", {}, 0, None)
    except Exception as exc:  # the caller must get a verdict, whatever the reader did
        verdict = ("decode", f"unexpected {type(exc).__name__} while decoding: {exc}", {}, 0, None)
    sender.send(verdict)
    sender.close()
