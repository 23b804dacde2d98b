"""Quarantine: bad files kept with a reason, never deleted, never announced.

Layout: ``<quarantine>/<YYYY-MM-DD>/<name>`` (the bytes, when there are any) and
``<name>.reason.json`` beside it (name, stage, reason, source URI, time). The
day is the day the file was quarantined. Putting the same file twice reuses
the first copy, so a retry after a failed dead-letter publish makes no second
copy.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from foundation.errors import IngestError
from foundation.files import atomic_write_text
from foundation.utc import iso_utc


@dataclass(frozen=True)
class Quarantined:
    """Where a refused file's reason (and bytes, if any) were kept."""

    reason_file: Path
    copy: Path | None


class Quarantine:
    """A folder of refused files and their reasons."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(
        self, name: str, *, local: Path | None, stage: str, reason: str, source_uri: str, at: datetime
    ) -> Quarantined:
        """Copy ``local`` (if any) and write the reason file."""
        folder = self.root / f"{at:%Y-%m-%d}"
        safe = Path(name).name or "unnamed"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / safe if local is not None else None
            if local is not None and target is not None:
                if not (target.is_file() and target.stat().st_size == local.stat().st_size):
                    shutil.copy2(local, target)
            reason_file = folder / f"{safe}.reason.json"
            record = {"name": name, "stage": stage, "reason": reason, "source_uri": source_uri, "at": iso_utc(at)}
            atomic_write_text(reason_file, json.dumps(record, indent=1) + "\n")
        except OSError as exc:
            msg = f"cannot quarantine {name} into {folder}: {exc}"
            raise IngestError(msg) from exc
        return Quarantined(reason_file, target)
