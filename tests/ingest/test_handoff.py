"""The decode handoff: a product the daemon read is taken by the worker only while the file is as it was read."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ingest import handoff as handoff_module
from ingest.handoff import HANDOFF, DecodedFiles


class Product:
    """Stands in for an ABI image: ``product_bytes`` counts ``values``."""

    def __init__(self, label: str, pixels: int = 10) -> None:
        self.label = label
        self.values = np.zeros(pixels, np.float32)


@pytest.fixture(autouse=True)
def _sized_by_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handoff_module, "product_bytes", lambda product: int(product.values.nbytes))


def counts() -> dict[str, float]:
    return {k: HANDOFF.labels(k)._value.get() for k in ("taken", "read", "dropped")}


def handoff(max_bytes: int = 1000) -> tuple[DecodedFiles, list[Path]]:
    reads: list[Path] = []

    def read(path: Path) -> Product:
        reads.append(path)
        return Product(f"disk:{path.read_text()}")

    return DecodedFiles(max_bytes, read=read), reads


def put(files: DecodedFiles, path: Path, product: Product, **kwargs: object) -> None:
    files.put(path, product, **kwargs)  # type: ignore[arg-type]


def test_the_worker_takes_what_the_daemon_read_once(tmp_path: Path) -> None:
    files, reads = handoff()
    frame = tmp_path / "frame.nc"
    frame.write_text("a")
    before = counts()
    put(files, frame, Product("decoded"), read_as=DecodedFiles.key(frame))
    assert files.read(frame).label == "decoded"
    assert files.read(frame).label == "disk:a"  # taken once; a second read (a predecessor) goes to disk
    assert reads == [frame]
    after = counts()
    assert (after["taken"] - before["taken"], after["read"] - before["read"]) == (1, 1)


def test_a_file_changed_after_or_while_it_was_read_is_read_again(tmp_path: Path) -> None:
    files, _ = handoff()
    frame = tmp_path / "frame.nc"
    frame.write_text("a")
    put(files, frame, Product("decoded"))
    frame.write_text("bb")  # rewritten after the daemon's read: another size
    assert files.read(frame).label == "disk:bb"
    frame.write_text("c")
    as_read = DecodedFiles.key(frame)
    frame.write_text("dd")  # rewritten while the daemon read it: not kept at all
    put(files, frame, Product("stale"), read_as=as_read)
    assert len(files) == 0
    assert files.read(frame).label == "disk:dd"


def test_products_never_taken_are_dropped_oldest_first_within_the_bound(tmp_path: Path) -> None:
    files, _ = handoff(max_bytes=100)  # two products of 40 bytes fit, not three
    before = counts()
    paths = []
    for k in range(3):
        path = tmp_path / f"f{k}.nc"
        path.write_text(str(k))
        os.utime(path, ns=(k, k))
        put(files, path, Product(f"p{k}"))
        paths.append(path)
    assert len(files) == 2
    assert counts()["dropped"] - before["dropped"] == 1
    assert [files.read(p).label for p in paths] == ["disk:0", "p1", "p2"]
