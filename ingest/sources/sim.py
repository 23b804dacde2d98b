"""Synthetic source (``sim:``): the scenario writer as a live feed, for the demo and tests.

On the first poll the whole scenario is written (NOAA-format files, see
:mod:`ingest.synthetic`) into ``<cache>/sim/<sector>-<start>-s<seed>/``; polls then
release each file once its arrival time has come. A file *arrives* 20 s after its
scan end (NOAA's typical latency), replayed ``speed`` times faster than real time
from the moment of the first poll; ``speed=0`` (the default) releases everything
at once.

The source keeps the replay's own clock (:meth:`SimSource.replay_now`: the
scenario time the replay has reached), so that the ingest daemon reports each
file's lag against it rather than against the wall clock (years, for a scenario
of 2024), and says when the replay is over (:meth:`SimSource.exhausted`).

Options: ``sim:?sector=M1&start=2024-06-15T18:00Z&minutes=30&seed=1&satellite=G19&speed=60``, and
``cloud_top_offset_k=15`` for a regime change (every cloud top 15 K warmer; drift tests).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

from foundation.clock import Clock
from foundation.errors import ConfigError
from foundation.utc import parse_utc
from ingest.filenames import parse_filename
from ingest.sources import Candidate, SourceContext, parse_options
from ingest.synthetic import ScenarioConfig, simulate

log = logging.getLogger(__name__)

#: Delay between a file's scan end and its arrival.
ARRIVAL_LATENCY = timedelta(seconds=20)
_OPTIONS = ("sector", "start", "minutes", "seed", "satellite", "speed", "cloud_top_offset_k")


class SimSource:
    """A :class:`~ingest.sources.FrameSource` replaying a synthetic scenario."""

    def __init__(self, config: ScenarioConfig, clock: Clock, *, speed: float = 0.0) -> None:
        self.config = config
        self.clock = clock
        self.speed = speed
        self._files: list[tuple[datetime, Path]] | None = None
        self._began = 0.0
        self._full_polls = 0  # polls that found every file released

    @classmethod
    def from_uri(cls, uri: str, context: SourceContext) -> SimSource:
        """``sim:[?options]``; files go under the context's cache folder."""
        options = parse_options(uri.split(":", 1)[1].lstrip("?"), _OPTIONS, uri)
        try:
            start = parse_utc(options.get("start", "2024-06-15T18:00Z"), naive_is_utc=True)
            sector, seed = options.get("sector", "M1"), int(options.get("seed", "1"))
            warmer = float(options.get("cloud_top_offset_k", "0"))
            variant = f"-w{warmer:g}" if warmer else ""
            config = ScenarioConfig(
                out=context.cache / "sim" / f"{sector}-{start:%Y%m%dT%H%M}-s{seed}{variant}",
                sector=sector,
                start=start,
                minutes=int(options.get("minutes", "30")),
                seed=seed,
                satellite=options.get("satellite", "G19"),
                cloud_top_offset_k=warmer,
            )
            speed = float(options.get("speed", "0"))
        except ValueError as exc:
            msg = f"bad synthetic source {uri!r}: {exc}"
            raise ConfigError(msg) from exc
        if speed < 0:
            msg = f"speed: expected >= 0 (0 releases everything at once), found {speed}"
            raise ConfigError(msg)
        return cls(config, context.clock, speed=speed)

    def _scenario(self) -> list[tuple[datetime, Path]]:
        if self._files is None:
            marker = self.config.out / ".complete"
            if marker.is_file():
                paths = sorted(self.config.out.glob("OR_*.nc"))
            else:
                paths = simulate(self.config)
                marker.touch()
            self._files = sorted((parse_filename(p).scan_end + ARRIVAL_LATENCY, p) for p in paths)
            self._began = self.clock.monotonic()
        return self._files

    def _released(self) -> int:
        files = self._scenario()
        if self.speed == 0 or not files:
            return len(files)
        elapsed = (self.clock.monotonic() - self._began) * self.speed
        first = files[0][0]
        return sum(1 for arrival, _ in files if (arrival - first).total_seconds() <= elapsed)

    def replay_now(self) -> datetime | None:
        """The scenario time the replay has reached (``None`` before the first poll).

        The first file's arrival plus the elapsed time times ``speed``; with ``speed=0`` (everything at once), the
        last file's arrival.
        """
        if not self._files:
            return None
        first, last = self._files[0][0], self._files[-1][0]
        if self.speed == 0:
            return last
        return min(first + timedelta(seconds=(self.clock.monotonic() - self._began) * self.speed), last)

    def exhausted(self) -> bool:
        """Every file released, and polled since by a caller that then came back (so it has handled them all)."""
        return self._full_polls >= 2

    def poll(self) -> list[Candidate]:
        """The files whose arrival time has come."""
        released = self._released()
        self._full_polls += released == len(self._scenario())
        files = [p for _, p in self._scenario()[:released] if p.is_file()]  # refused ones are gone
        return [Candidate(p.name, p.resolve().as_uri(), p.stat().st_size, local=p) for p in files]

    def pending(self) -> int:
        """Files of the scenario not released yet."""
        return len(self._scenario()) - self._released()

    def fetch(self, candidate: Candidate) -> Path:
        """The written file itself."""
        return candidate.local or Path(candidate.source_uri)

    def discard(self, candidate: Candidate, local: Path) -> None:
        """Remove the file (a copy is in quarantine)."""
        local.unlink(missing_ok=True)
