"""One way to replace a file: write a uniquely named temporary beside it, ``fsync``, rename over it.

Every grid, checkpoint, model-repository state file, ``models.config`` and
quarantine reason file is written through :func:`atomic_path` (or its two
shorthands), so

* a reader sees the old file or the new one, never a part (``rename(2)`` is atomic
  within one file system);
* two writers of the same target (two workers scoring one frame on a shared
  volume, a re-delivered event) never share a temporary file: each has its own
  name, made with ``O_EXCL``, and the last rename wins with a whole file;
* after the call returns the content survives a crash of the machine
  (``durable``: the file and its folder are ``fsync``-ed);
* a failure removes the temporary and raises; the target is untouched.

Temporary names are ``.<target name>.<random>.tmp``: hidden and ending in
``.tmp``, which the spool source, the grid store and the model repository
already pass over.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> atomic_write_text(folder / "state.json", '{"current": 1}').name
'state.json'
>>> (folder / "state.json").read_text()
'{"current": 1}'
>>> sorted(p.name for p in folder.iterdir())  # no temporary left behind
['state.json']
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["TEMPORARY_SUFFIX", "atomic_path", "atomic_write_bytes", "atomic_write_text", "fsync_folder"]

TEMPORARY_SUFFIX = ".tmp"


def fsync_folder(folder: Path) -> None:
    """Make a rename or creation inside ``folder`` durable."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


@contextmanager
def atomic_path(target: Path, *, durable: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``target``; on leaving the block, rename it over ``target``.

    The block writes the temporary by path (``netCDF4.Dataset(tmp, "w")``,
    ``shutil.copyfile``…); it may replace the empty file created here. The
    parent folder is created when missing. If the block raises, the temporary
    is removed and ``target`` is left as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMPORARY_SUFFIX, dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        if durable:
            with temporary.open("rb+") as written:
                os.fsync(written.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        fsync_folder(target.parent)


def atomic_write_bytes(target: Path, data: bytes, *, durable: bool = True) -> Path:
    """Replace ``target`` with ``data`` atomically; return ``target``."""
    with atomic_path(target, durable=durable) as temporary:
        temporary.write_bytes(data)
    return target


def atomic_write_text(target: Path, text: str, *, durable: bool = True) -> Path:
    """Replace ``target`` with ``text`` (UTF-8) atomically; return ``target``."""
    return atomic_write_bytes(target, text.encode("utf-8"), durable=durable)
