"""The weather of the synthetic scenarios: storm cells, steering winds, flash rates, flashes, groups and events.

:class:`Weather` evolves one sector's clouds and convective cells and renders its band-13 brightness
temperature; :class:`Lightning` draws a GLM granule's flashes, groups and events from the cells' flash
rates. Neither writes files (:mod:`ingest.synthetic.writer` does).

The weather is simple but learnable, and its ranges are meant to cover what
GOES-R sees, not only the typical storm:

* clear sky whose brightness temperature falls with latitude, with smooth
  mesoscale texture and 0.3 K sensor noise;
* drifting semi-transparent cirrus shields, from thin and warm to nearly opaque
  and cold (205 K), never electrified;
* convective cells of three kinds, born inside the sector or up to 50 px outside
  it, drifting with a steering wind from any direction plus a motion of their own:

  - **storms** grow, **cool at the top for 10–30 minutes before their first
    flash** (the flash comes when the top passes the cell's onset temperature,
    228–240 K), mature (coldest tops, most flashes, an anvil spreading
    downstream), may **split** into a right and a left mover that diverge,
    merge when they touch, and decay, still flashing while their tops warm;
  - **cumulus** that never get cold enough to flash (tops 240–285 K, up to clear sky);
  - **cold anvils** that cool slowly to 205–222 K and live 1–3 hours but never
    electrify, so that "cold" alone never means "lightning";
* space pixels beyond the limb in the full-disk sector.

Ranges and where they come from (what the literature search behind issue 16
found; 1 px = 2 km at nadir, so 1 px/min = 33 m/s at nadir and about 40 m/s at
35° N, where GOES-East's pixels are 2.5–2.7 km):

===================== ============================================ ===================================================
quantity              in the simulator                             source
===================== ============================================ ===================================================
peak flash rate       0.1–600 flashes/min per storm                Schultz, Petersen & Carey 2009, "Preliminary
                      (``rate_max``). 92 % of storms: log-normal,  Development and Evaluation of Lightning Jump
                      median 4/min, σ_ln 1.0; 8 % "severe": a      Algorithms for the Real-Time Detection of Severe
                      Pareto tail from 40/min (α 1.3), capped at   Weather" (JAMC; LMA: mean peak 1-min rate of 69
                      600. 2.5 % of storms exceed 100/min, 0.6 %   non-severe storms 10/min); Erdmann & Poelman 2023,
                      300/min; merging adds half the smaller       "Automated Lightning Jump (LJ) Detection from
                      storm's rate.                                Geostationary Satellite Data" (JAMC 62(11); GLM
                                                                   jump threshold 15/min); the RELAMPAGO GLM-LMA
                                                                   validation (essopenarchive doi
                                                                   10.22541/essoar.168298687.73020069: GLM counts 2.9x
                                                                   fewer flashes than the LMA, more so at high rates);
                                                                   Rutledge et al. 2020, "Evaluating Geostationary
                                                                   Lightning Mapper Flash Rates Within Intense
                                                                   Convective Storms" (JGR 125, e2020JD032827); AMS
                                                                   Annual 2005 paper 84373 (LMA: nearly 14 flashes/s
                                                                   in a tornadic supercell, 10 Nov 2002). "GLM sees
                                                                   well over 100/min in single storms": commonly
                                                                   quoted; no GLM maximum was verified here.
flash packing         flashes N(0, σ) about the core, σ = min(0.35 Bruning et al., AMS 95th Annual paper 256223
                      r, 2.5 + 80/rate) px: ≤ 3.3 px above         (Kingfisher supercell, DC3: flashes in and around
                      100/min, so > 90 % within 8 px; as rates     the updraft are small, larger away from it). The
                      rise, flashes get smaller: mean groups per   8-px packing is a design choice, not a measured
                      flash 7.7 → 3.5 and event spread 3 → 1.2 px  value.
                      (at ≥ 300/min)
coldest storm tops    185–236 K, colder with higher flash rate     CIMSS Satellite Blog: −86 °C (187 K) on NOAA-15 vs
                      (226 − 7 ln(rate/2) K, σ 6 K); 185 K is the  −73 °C on GOES-12, 15 Jun 2009; −87 to −92 °C on
                      floor                                        MODIS/VIIRS/AVHRR, 11 Jun 2018; GOES-16 10.3 µm
                                                                   overshooting tops near −70 °C, 16 Dec 2019; Bedka
                                                                   et al. 2010, "Objective Satellite-Based Detection
                                                                   of Overshooting Tops Using Infrared Window Channel
                                                                   Brightness Temperature Gradients" (JAMC 49). Colder
                                                                   records (−111 °C, Proud & Bachmeier, VIIRS) are
                                                                   finer than a 2-km pixel.
first flash           when the top passes the storm's onset        Harris, Mecikalski et al. 2010, "The Definition of
                      temperature, 228–240 K, after 10–30 min of   GOES Infrared Lightning Initiation Interest Fields"
                      steady cooling from 262 K (22–34 K)          (JAMC 49: IR fields useful ≥ 15 min, 35 min on
                                                                   average, before the first flash); Mecikalski et al.
                                                                   2013, "Regional Comparison of GOES Cloud-Top
                                                                   Properties and Radar Characteristics in Advance of
                                                                   First-Flash Lightning Initiation" (MWR 141); a
                                                                   GOES-16 student study (jetty.klnpa.org) put first
                                                                   flashes at −20 to −45 °C.
tops that never flash cumulus 240–285 K (to clear sky); cold       Matthee & Mecikalski 2013 and Mecikalski et al.
                      anvils cooling over 25–50 min to 205–222 K   2014 (MWR 142(10): lightning vs non-lightning
                      and living 75–195 min (they never merge);    storms); Garrett et al. 2005, "Thunderstorm anvils:
                      cirrus 205–245 K, opacity 0.3–0.95 (mostly   a close look at their evolution" (BAMS 86: one
                      thin), all scenario long                     anvil cirrus followed for 3 h, from attached to
                                                                   dissipating); "orphan anvils"
                                                                   (lawrenceburkett.org). The 205–222 K range itself:
                                                                   commonly quoted; not verified here.
decaying storms       flash rate rate_max (1 − x)^k over the       "Dissipating stage … lightning remains a danger"
                      decay, k 0.5–2.5 per storm (x: fraction of   (sccmo.org, life cycle of a thunderstorm). Decay
                      the decay), while the top warms to 258 K     rates themselves: not verified here.
storm lifetimes       growth 10–30 min; mature 10–50 min + 25      sccmo.org (mature stage 10–20 min on average, much
                      log10(1 + rate) (severe storms up to ~2 h,   longer in some storms); "Climatology of
                      +10 min per merger); decay 15–50 min         Thunderstorms for North Dakota, 2002–06" (radar
                                                                   cells: mean life 23.6 min).
steering wind         0–1.0 px/min (0–33 m/s at nadir): 15 % near- Britannica, "Thunderstorm: movement" (isolated
                      stationary (< 0.1 px/min, 3.3 m/s), 65 %     storms typically 20 km/h = 5.6 m/s; in light winds
                      0.1–0.6, 20 % fast 0.6–1.0 (20–33 m/s); 65 % a cell moves < 2 km in its life; supercells 65–80
                      of scenarios from the west ±46°, 35 % from   km/h in extremes); the North Dakota climatology
                      any direction. Was 0.6–1.8 px/min (20–60     (mean 16.4 m/s); IEM Des Moines storm attributes
                      m/s), faster than any source found.          (mostly 20–40 mph = 9–18 m/s); the 15 Dec 2021
                                                                   derecho averaged 63 mph = 28 m/s (tweet quoted on
                                                                   americanwx.com).
own cell motion       the wind plus N(0, 0.06 + 0.2 |wind|) px/min design choice
                      per component
splitting             mature storms of ≥ 8 px, 0.4 %/min, once:    AMS Glossary, "splitting convective storm";
                      the fragments move 0.1–0.3 px/min apart      Wikipedia, "Splitting storm" (splits mostly within
                      across the motion; the right mover keeps 85  an hour of formation; right movers stronger in the
                      % of the flash rate, the left 50 % and dies  Northern Hemisphere).
                      sooner
sector edges          cells born anywhere in the sector and a      design choice
                      50-px margin round it, kept until 50 px
                      outside; with winds from every side they
                      cross all four edges
===================== ============================================ ===================================================

Where the sources were found (addresses as the search returned them; the items are abstracts, blog posts
and summaries, not every full paper was read):

* Schultz et al. 2009: https://discovery.researcher.life/article/preliminary-development-and-evaluation-of-lightning-jump-algorithms-for-the-realtime-detection-of-severe-weather/b86a59997c813efd896fce483de9b227
* Erdmann & Poelman 2023: https://journals.ametsoc.org/view/journals/apme/62/11/JAMC-D-22-0144.1.xml
* RELAMPAGO GLM validation: https://essopenarchive.org/doi/full/10.22541/essoar.168298687.73020069/v1
* Rutledge et al. 2020: https://agupubs.onlinelibrary.wiley.com/doi/10.1029/2020JD032827
* LMA flash algorithm, 14 flashes/s: https://ams.confex.com/ams/Annual2005/webprogram/Paper84373.html
* Kingfisher supercell flash sizes: https://ams.confex.com/ams/95Annual/webprogram/Paper256223.html
* CIMSS blog: https://cimss.ssec.wisc.edu/satellite-blog/archives/2719 (2009),
  https://cimss.ssec.wisc.edu/satellite-blog/page/547 (2018), https://cimss.ssec.wisc.edu/satellite-blog/archives/35225
* Bedka et al. 2010: https://studylib.net/doc/12980464/objective-satellite-based-detection-of-overshooting-tops-...
* Harris et al. 2010: http://yetl.yabesh.ir/yetl1/handle/yetl/4211873; Mecikalski et al. 2013:
  https://journals.ametsoc.org/view/journals/mwre/141/1/mwr-d-12-00120.1.xml; onset temperatures of GOES-16 cells:
  https://jetty.klnpa.org/node/19962/ocr
* Mecikalski et al. 2014: https://journals.ametsoc.org/view/journals/mwre/142/10/mwr-d-14-00047.1.xml; Garrett et al.
  2005: https://impacts.ucar.edu/en/publications/thunderstorm-anvils-a-close-look-at-their-evolution-2/; orphan anvil:
  https://www.lawrenceburkett.org/home/research/prior-research/weather-flashback/sep-2022-orphan-anvil-apr-29-2022
* Life cycle of a thunderstorm: https://www.sccmo.org/879/Life-Cycle-of-a-Thunderstorm
* North Dakota climatology: https://discovery.researcher.life/article/climatology-of-thunderstorms-for-north-dakota-200206/cbdc0cc6b19e3a45aa7e990587f0f159
* Storm motion: https://britannica.com/science/thunderstorm/Movement-of-thunderstorms;
  http://mesonet2.agron.iastate.edu/onsite/features/tags/storms.html; derecho of 15 Dec 2021:
  https://www.americanwx.com/bb/index.php?app=core&module=system&controller=embed&url=https://twitter.com/WxLiz/status/1471438199352438788
* Splitting: https://glossary.ametsoc.org/w/index.php?title=Splitting_convective_storm&oldid=6441;
  https://wiki.camac.ltd/content/wikipedia_en_all_mini_2026-03/Splitting_storm

Lightning is placed consistently with GLM's navigation: a flash at ABI pixel
``(row, col)`` of its cell is written at the latitude/longitude where that
line of sight meets the lightning ellipsoid (see :mod:`ingest.geometry`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ingest.geometry import LIGHTNING_ELLIPSOID
from ingest.synthetic.scenario import GLM_SECONDS, SECTORS, ScenarioConfig, sector_grid

BIRTH_K = 262.0
ONSET_K = 236.0
DEATH_K = 258.0
T_FLOOR_K = 185.0  # the coldest overshooting top a 2-km pixel shows
RATE_CAP = 600.0  # flashes per minute
MARGIN_PX = 50  # cells are born, and live, up to this far outside the sector
SPLIT_PER_MIN = 0.004
KINDS = (("storm", 0.60), ("cumulus", 0.28), ("anvil", 0.12))


@dataclass
class Cell:
    """One convective cell; times in minutes since it was born, position in sector pixels.

    ``kind`` is ``"storm"`` (electrified), ``"cumulus"`` (warm, never flashes) or
    ``"anvil"`` (cold and long-lived, never flashes). ``parent`` is the id of the
    storm this one split from (0: none).
    """

    id: int
    row: float
    col: float
    v_row: float
    v_col: float
    growth: float  # minutes of cooling before the first flash
    mature: float
    decay: float
    t_min: float  # coldest top, K
    r_max: float  # pixels
    rate_max: float  # flashes per minute at maturity
    age: float = 0.0
    kind: str = "storm"
    onset_k: float = ONSET_K  # top temperature at the first flash (storms)
    decay_power: float = 2.0  # flash rate over the decay: rate_max * (1 - x) ** decay_power
    parent: int = 0
    split: bool = False  # split already (a storm splits once at most)

    @property
    def lifetime(self) -> float:
        """Total minutes from birth to dissipation."""
        return self.growth + self.mature + self.decay

    @property
    def electrified(self) -> bool:
        """Whether the cell ever flashes (storms only; cumulus and anvils never do)."""
        return self.kind == "storm" and self.rate_max > 0.0

    @property
    def birth_k(self) -> float:
        """Top temperature at birth, K (warm cumulus start just above their own top)."""
        return max(BIRTH_K, self.t_min + 6.0)

    @property
    def death_k(self) -> float:
        """Top temperature at dissipation, K."""
        return max(DEATH_K, self.t_min + 4.0)

    def core_bt(self) -> float:
        """Brightness temperature at the top of the cell now, K."""
        a, g, m = self.age, self.growth, self.mature
        birth = self.birth_k
        if self.kind == "storm":
            onset = max(self.t_min, self.onset_k)  # storms reach their onset temperature exactly at the first flash
            if a < g:
                return birth + (onset - birth) * a / g
            if a < g + m:
                return onset + (self.t_min - onset) * min(1.0, (a - g) / 10.0)
        else:
            if a < g:
                return birth + (self.t_min - birth) * a / g
            if a < g + m:
                return self.t_min
        return self.t_min + (self.death_k - self.t_min) * min(1.0, (a - g - m) / self.decay)

    def radius(self) -> float:
        """Core radius now, pixels."""
        return max(2.0, self.r_max * min(1.0, 0.3 + 0.7 * self.age / max(self.growth, 1.0)))

    def flash_rate(self) -> float:
        """Flashes per minute now: ramping up after the first flash, tailing off while the top warms."""
        a, g = self.age, self.growth
        if not self.electrified or a < g:
            return 0.0
        if a < g + self.mature:
            return self.rate_max * min(1.0, 0.2 + (a - g) / 5.0)
        x = min(1.0, (a - g - self.mature) / self.decay)
        return self.rate_max * math.pow(1.0 - x, self.decay_power)


def _peak_flash_rate(rng: np.random.Generator) -> float:
    """A storm's flash rate at maturity (flashes/min): log-normal bulk, Pareto tail of severe storms."""
    if rng.random() < 0.08:
        rate = 40.0 * (1.0 - rng.random()) ** (-1.0 / 1.3)
    else:
        rate = rng.lognormal(math.log(4.0), 1.0)
    return float(np.clip(rate, 0.1, RATE_CAP))


def _steering_wind(rng: np.random.Generator) -> tuple[float, float]:
    """The scenario's steering wind (row, col) in px/min: near-stationary to fast, mostly from the west."""
    pick = rng.random()
    if pick < 0.15:
        speed = rng.uniform(0.0, 0.1)
    elif pick < 0.80:
        speed = rng.uniform(0.1, 0.6)
    else:
        speed = rng.uniform(0.6, 1.0)
    heading = rng.uniform(-0.8, 0.8) if rng.random() < 0.65 else rng.uniform(-math.pi, math.pi)
    return speed * math.sin(heading), speed * math.cos(heading)


@dataclass
class _State:
    rng: np.random.Generator
    cells: list[Cell] = field(default_factory=list)
    next_id: int = 1
    wind: tuple[float, float] = (0.0, 1.0)
    flash_id: int = 0
    group_id: int = 0
    event_id: int = 0


class Weather:
    """The evolving weather of one scenario's sector: clear sky, cirrus and convective cells.

    ``rng`` is the scenario's one random stream, seeded by ``config.seed``; the scenario's files draw
    their creation delays and ids from it too, in turn with the weather, so the same seed gives the
    same files.
    """

    def __init__(self, config: ScenarioConfig) -> None:
        self.config = config
        self.sector = SECTORS[config.sector]
        self.grid = sector_grid(config)
        rng = np.random.default_rng(config.seed)
        self.state = _State(rng=rng, wind=_steering_wind(rng))
        self.earth = self.grid.earth_mask()
        self.earth_pixels = int(self.earth.sum())
        coarse_rows, coarse_cols = np.nonzero(self.earth[::16, ::16])
        self.coarse_earth = (coarse_rows * 16, coarse_cols * 16)
        # the full disk has space all round it; other sectors get cells born in a margin and moving in
        self.margin = 0 if self.sector.code == "F" else MARGIN_PX
        self.background = self._background(rng)
        self.cirrus = self._cirrus(rng)
        self.clock = config.start - timedelta(minutes=config.spin_up_minutes)
        self.lightning_projection = self.grid.projection.on_ellipsoid(LIGHTNING_ELLIPSOID)

    @property
    def rng(self) -> np.random.Generator:
        """The scenario's random stream."""
        return self.state.rng

    # ---- evolution --------------------------------------------------------------------------
    def advance_to(self, when: datetime) -> None:
        """Step the weather in 20-s steps (one GLM granule) while a whole step fits before ``when``."""
        while self.clock + timedelta(seconds=GLM_SECONDS) <= when:
            self._step(GLM_SECONDS / 60.0)
            self.clock += timedelta(seconds=GLM_SECONDS)

    def _step(self, dt: float) -> None:
        state = self.state
        mean_life = 85.0  # minutes, averaged over the kinds of cell
        rows, cols = self.grid.shape
        margin = self.margin
        area = (rows + 2 * margin) * (cols + 2 * margin) / (rows * cols)
        rate = self.sector.storm_density * self.earth_pixels * area / 1e6 / mean_life
        for _ in range(state.rng.poisson(rate * dt)):
            state.cells.append(self._new_cell())
        for cell in state.cells:
            cell.age += dt
            cell.row += cell.v_row * dt
            cell.col += cell.v_col * dt
        self._split(dt)
        self._merge()
        lo, row_hi, col_hi = -margin - 1, rows + margin + 1, cols + margin + 1
        state.cells = [c for c in state.cells if c.age < c.lifetime and lo < c.row < row_hi and lo < c.col < col_hi]

    def _birth_place(self) -> tuple[float, float]:
        """A random place on the earth, in the sector or its margin."""
        rng, rows, cols, margin = self.state.rng, *self.grid.shape, self.margin
        for _ in range(8):
            row, col = rng.uniform(-margin, rows + margin), rng.uniform(-margin, cols + margin)
            if self.earth[min(max(int(row), 0), rows - 1), min(max(int(col), 0), cols - 1)]:
                return float(row), float(col)
        earth_rows, earth_cols = self.coarse_earth
        pick = rng.integers(earth_rows.size)
        return float(earth_rows[pick] + rng.uniform(0, 16)), float(earth_cols[pick] + rng.uniform(0, 16))

    def _new_cell(self) -> Cell:
        state, rng = self.state, self.state.rng
        mature = [c for c in state.cells if c.age > c.growth]
        if mature and rng.random() < 0.4:  # new towers near old outflow: clusters and merges
            parent = mature[rng.integers(len(mature))]
            row, col = parent.row + rng.normal(0, 2.5 * parent.r_max), parent.col + rng.normal(0, 2.5 * parent.r_max)
        else:
            row, col = self._birth_place()
        wind = state.wind
        own = 0.06 + 0.2 * math.hypot(*wind)  # px/min: every cell also moves a little its own way
        pick = rng.random()
        kind = "storm" if pick < KINDS[0][1] else "cumulus" if pick < KINDS[0][1] + KINDS[1][1] else "anvil"
        cell = Cell(id=state.next_id, row=float(row), col=float(col), v_row=wind[0] + rng.normal(0, own),
                    v_col=wind[1] + rng.normal(0, own), growth=0.0, mature=0.0, decay=0.0, t_min=0.0, r_max=0.0,
                    rate_max=0.0, kind=kind)  # fmt: skip
        if kind == "storm":
            rate = _peak_flash_rate(rng)
            cell.onset_k = float(rng.uniform(228.0, 240.0))
            cell.rate_max = rate
            cell.t_min = float(np.clip(226.0 - 7.0 * math.log(rate / 2.0) + rng.normal(0, 6.0), T_FLOOR_K,
                                       cell.onset_k - 4.0))  # fmt: skip
            cell.r_max = float(min(35.0, rng.uniform(5, 20) * (1.0 + 0.25 * math.log10(1.0 + rate))))
            cell.growth = float(rng.uniform(10, 30))
            cell.mature = float(rng.uniform(10, 50) + 25.0 * math.log10(1.0 + rate))
            cell.decay = float(rng.uniform(15, 50))
            cell.decay_power = float(rng.uniform(0.5, 2.5))
        elif kind == "cumulus":
            cell.t_min = float(rng.uniform(240, 285))
            cell.r_max = float(rng.uniform(3, 12))
            cell.growth, cell.mature, cell.decay = (float(rng.uniform(*r)) for r in ((8, 25), (5, 30), (10, 25)))
        else:
            cell.t_min = float(rng.uniform(205, 222))
            cell.r_max = float(rng.uniform(15, 35))
            cell.growth, cell.mature, cell.decay = (float(rng.uniform(*r)) for r in ((25, 50), (30, 100), (20, 45)))
        state.next_id += 1
        return cell

    def _split(self, dt: float) -> None:
        """A mature storm occasionally splits into a right and a left mover that diverge."""
        state, rng = self.state, self.state.rng
        born: list[Cell] = []
        for cell in state.cells:
            if (cell.kind != "storm" or cell.split or cell.parent or cell.r_max < 8.0
                    or not cell.growth + 5.0 < cell.age < cell.growth + cell.mature):  # fmt: skip
                continue
            if rng.random() >= SPLIT_PER_MIN * dt:
                continue
            speed = math.hypot(cell.v_row, cell.v_col)
            if speed > 1e-6:
                right = (cell.v_col / speed, -cell.v_row / speed)  # to the right of the motion (rows grow southward)
            else:
                angle = rng.uniform(-math.pi, math.pi)
                right = (math.sin(angle), math.cos(angle))
            dv, offset = float(rng.uniform(0.1, 0.3)), 0.3 * cell.radius()
            mature_left = cell.growth + cell.mature - cell.age
            left = replace(cell, id=state.next_id, parent=cell.id, split=True,
                           row=cell.row - right[0] * offset, col=cell.col - right[1] * offset,
                           v_row=cell.v_row - right[0] * dv, v_col=cell.v_col - right[1] * dv,
                           r_max=0.8 * cell.r_max, rate_max=0.5 * cell.rate_max,
                           mature=cell.age - cell.growth + mature_left * float(rng.uniform(0.3, 0.8)))  # fmt: skip
            state.next_id += 1
            cell.split = True
            cell.row, cell.col = cell.row + right[0] * offset, cell.col + right[1] * offset
            cell.v_row, cell.v_col = cell.v_row + right[0] * dv, cell.v_col + right[1] * dv
            cell.r_max, cell.rate_max = 0.8 * cell.r_max, 0.85 * cell.rate_max
            born.append(left)
        state.cells.extend(born)

    def _merge(self) -> None:
        cells = self.state.cells
        if len(cells) < 2:
            return
        pos = np.array([(c.row, c.col) for c in cells])
        radius = np.array([c.radius() for c in cells])
        dist = np.hypot(pos[:, None, 0] - pos[None, :, 0], pos[:, None, 1] - pos[None, :, 1])
        touching = np.triu(dist < 0.6 * (radius[:, None] + radius[None, :]), k=1)
        gone: set[int] = set()
        for i, j in zip(*np.nonzero(touching), strict=True):
            if i in gone or j in gone:
                continue
            a, b = cells[i], cells[j]
            if a.parent == b.id or b.parent == a.id:
                continue  # the two halves of a split drift apart, they do not merge back
            if a.kind == "anvil" or b.kind == "anvil":
                continue  # an anvil spreads aloft: towers rise through it, they do not merge with it
            if (a.kind == "storm") != (b.kind == "storm"):
                big, small = (a, b) if a.kind == "storm" else (b, a)  # the storm takes the other cloud in
            else:
                big, small = (a, b) if radius[i] >= radius[j] else (b, a)
            big.r_max = min(35.0, max(big.r_max, small.r_max) + 0.4 * min(big.r_max, small.r_max))
            big.rate_max = min(RATE_CAP, big.rate_max + 0.5 * small.rate_max)
            big.t_min = min(big.t_min, small.t_min)
            big.mature += 10.0
            gone.add(j if big is a else i)
        self.state.cells = [c for k, c in enumerate(cells) if k not in gone]

    # ---- fields ---------------------------------------------------------------------------
    def _background(self, rng: np.random.Generator) -> NDArray[np.float32]:
        """Clear-sky brightness temperature (K): colder poleward, with smooth texture."""
        _, lat = self.grid.lonlat()
        clear = 303.0 - 0.45 * np.abs(np.nan_to_num(lat) - 12.0)
        texture = _smooth_noise(rng, self.grid.shape, cell=48, sigma=2.5)
        field = np.clip(clear + texture, 235.0, 310.0).astype(np.float32)
        field[~self.earth] = np.nan
        return field

    def _cirrus(self, rng: np.random.Generator) -> list[dict[str, float]]:
        rows, cols = self.grid.shape
        count = max(2, int(self.sector.storm_density * rows * cols / 1e6 / 3))
        return [
            {
                "row": float(rng.uniform(0, rows)),
                "col": float(rng.uniform(0, cols)),
                "r": float(rng.uniform(30, 120)),
                "opacity": float(0.3 + 0.65 * rng.uniform() ** 2),  # mostly thin, a few nearly opaque
                "t": float(rng.uniform(205, 245)),
            }
            for _ in range(count)
        ]

    def render(self) -> NDArray[np.float32]:
        """Band-13 brightness temperature of the sector now, K; NaN in space."""
        bt = self.background.copy()
        minutes = (self.clock - self.config.start).total_seconds() / 60.0
        warmer = self.config.cloud_top_offset_k
        for cirrus in self.cirrus:
            row = cirrus["row"] + self.state.wind[0] * minutes
            col = cirrus["col"] + self.state.wind[1] * minutes
            _blend(bt, row, col, cirrus["r"], cirrus["t"] + warmer, cirrus["opacity"])
        for cell in self.state.cells:
            r, top = cell.radius(), cell.core_bt() + warmer
            if cell.kind == "storm" and cell.age > cell.growth:  # anvil spreading downstream, warmer than the core
                norm = math.hypot(cell.v_row, cell.v_col) or 1.0
                _blend(bt, cell.row + cell.v_row / norm * r, cell.col + cell.v_col / norm * r, 1.8 * r, top + 14, 1.0)
            _blend(bt, cell.row, cell.col, r, top, 1.0)
        bt += self.state.rng.normal(0.0, 0.3, bt.shape).astype(np.float32)
        return bt

    # ---- truth ------------------------------------------------------------------------------
    def truth(self) -> list[dict[str, Any]]:
        """Every cell now, as ``truth.jsonl`` records it: pixel position, top temperature, flash rate, kind, parent."""
        return [
            {
                "id": c.id,
                "row": round(c.row, 2),
                "col": round(c.col, 2),
                "age_min": round(c.age, 2),
                "growth_min": round(c.growth, 2),
                "core_bt": round(c.core_bt(), 2),
                "radius_px": round(c.radius(), 2),
                "flash_rate_per_min": round(c.flash_rate(), 3),
                "kind": c.kind,
                "parent": c.parent or None,
            }
            for c in self.state.cells
        ]


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: int, sigma: float) -> NDArray[np.float64]:
    """Bilinearly interpolated coarse Gaussian noise: texture on a ``cell``-pixel scale."""
    rows, cols = shape
    coarse = rng.normal(0.0, sigma, (rows // cell + 2, cols // cell + 2))
    r = np.arange(rows) / cell
    c = np.arange(cols) / cell
    r0, c0 = r.astype(int), c.astype(int)
    fr, fc = (r - r0)[:, None], (c - c0)[None, :]
    top = coarse[r0][:, c0] * (1 - fc) + coarse[r0][:, c0 + 1] * fc
    bottom = coarse[r0 + 1][:, c0] * (1 - fc) + coarse[r0 + 1][:, c0 + 1] * fc
    return np.asarray(top * (1 - fr) + bottom * fr)


def _blend(bt: NDArray[np.float32], row: float, col: float, radius: float, top: float, opacity: float) -> None:
    """Blend a Gaussian cloud of top temperature ``top`` into ``bt`` in place (colder wins)."""
    rows, cols = bt.shape
    half = int(3 * radius) + 1
    r0, r1 = max(0, int(row) - half), min(rows, int(row) + half + 1)
    c0, c1 = max(0, int(col) - half), min(cols, int(col) + half + 1)
    if r0 >= r1 or c0 >= c1:
        return
    rr = np.arange(r0, r1) - row
    cc = np.arange(c0, c1) - col
    # exp(-(r² + c²)/R²) = exp(-r²/R²) · exp(-c²/R²): two 1-D exponentials instead of a 2-D one
    across = np.exp(-(cc**2) / radius**2).astype(np.float32)
    weight = (opacity * np.exp(-(rr**2) / radius**2)).astype(np.float32)[:, None] * across[None, :]
    window = bt[r0:r1, c0:c1]
    np.minimum(window, window + weight * (np.float32(top) - window), out=window)


@dataclass
class Lightning:
    """Flashes, groups and events of one granule, in physical units."""

    flash: dict[str, NDArray[Any]]
    group: dict[str, NDArray[Any]]
    event: dict[str, NDArray[Any]]

    @classmethod
    def generate(cls, weather: Weather, start: datetime) -> Lightning:
        """Draw this granule's flashes from every electrified cell's current rate."""
        rng, state = weather.state.rng, weather.state
        rows: list[NDArray[np.float64]] = []
        rates: list[NDArray[np.float64]] = []
        for cell in state.cells:
            rate = cell.flash_rate()
            if rate <= 0.0:
                continue
            count = rng.poisson(rate * GLM_SECONDS / 60.0)
            if count:
                spread = min(0.35 * cell.radius(), 2.5 + 80.0 / rate)  # intense cores pack their flashes tightly
                rows.append(
                    np.column_stack([cell.row + rng.normal(0, spread, count), cell.col + rng.normal(0, spread, count)])
                )
                rates.append(np.full(count, rate))
        centres = np.concatenate(rows) if rows else np.empty((0, 2))
        rate_of = np.concatenate(rates) if rates else np.empty(0)
        centre_lon, centre_lat = _pixel_to_lightning_lonlat(weather, centres)
        visible = np.isfinite(centre_lon)
        return _build_hierarchy(weather, centres[visible], centre_lon[visible], centre_lat[visible], rate_of[visible])


def _pixel_to_lightning_lonlat(
    weather: Weather, pix: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Sector pixel (row, col) → lon/lat where that line of sight meets the lightning ellipsoid."""
    x, y = weather.grid.scan_angles_of(pix[:, 0], pix[:, 1])
    return weather.lightning_projection.lonlat(x, y)


def _build_hierarchy(
    weather: Weather,
    centres: NDArray[np.float64],
    centre_lon: NDArray[np.float64],
    centre_lat: NDArray[np.float64],
    rates: NDArray[np.float64],
) -> Lightning:
    """Flashes at ``centres`` (sector pixels; their lightning-ellipsoid lon/lat given) → groups → events.

    ``rates`` is the flash rate (per minute) of each flash's cell: the more flashes a
    cell makes, the smaller they are (fewer groups, events nearer the flash centre).
    """
    rng, state = weather.state.rng, weather.state
    n = centres.shape[0]
    intensity = np.clip(rates / 300.0, 0.0, 1.0)
    t0 = np.asarray(rng.uniform(0.0, GLM_SECONDS - 1.5, n), dtype=np.float64)
    n_groups = np.minimum(1 + rng.geometric(0.15 + 0.25 * intensity), 40)
    group_flash = np.repeat(np.arange(n), n_groups)
    group_time = t0[group_flash] + rng.uniform(0.0, 1.2, group_flash.size)
    n_events = 1 + rng.poisson(1.8, group_flash.size)
    event_group = np.repeat(np.arange(group_flash.size), n_events)
    event_spread = (3.0 - 1.8 * intensity)[group_flash][event_group]
    pix = centres[group_flash][event_group] + rng.normal(0, 1.0, (event_group.size, 2)) * event_spread[:, None]
    lon, lat = _pixel_to_lightning_lonlat(weather, pix)
    off_disk = ~np.isfinite(lon)  # events spread past the limb fall back to their flash centre
    event_flash = group_flash[event_group]
    lon[off_disk], lat[off_disk] = centre_lon[event_flash[off_disk]], centre_lat[event_flash[off_disk]]
    energy = rng.lognormal(math.log(3e-15), 0.7, event_group.size)
    event_time = group_time[event_group] + rng.uniform(0, 0.002, event_group.size)

    def per(owner: NDArray[np.int64], size: int, values: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(np.bincount(owner, weights=values, minlength=size), dtype=np.float64)

    g_energy = per(event_group, group_flash.size, energy)
    g_lat = per(event_group, group_flash.size, energy * lat) / np.maximum(g_energy, 1e-30)
    g_lon = per(event_group, group_flash.size, energy * lon) / np.maximum(g_energy, 1e-30)
    f_energy = per(group_flash, n, g_energy)
    f_lat = per(group_flash, n, g_energy * g_lat) / np.maximum(f_energy, 1e-30)
    f_lon = per(group_flash, n, g_energy * g_lon) / np.maximum(f_energy, 1e-30)
    g_area = n_events * 70.0
    f_area = per(group_flash, n, g_area.astype(np.float64)) * 0.6 + 30.0
    t_first = np.full(n, np.inf)
    t_last = np.full(n, -np.inf)
    np.minimum.at(t_first, group_flash, group_time)
    np.maximum.at(t_last, group_flash, group_time)
    flash_ids = (state.flash_id + np.arange(n)) % 65535 + 1
    group_ids = state.group_id + np.arange(group_flash.size) + 1
    event_ids = state.event_id + np.arange(event_group.size) + 1
    state.flash_id += n
    state.group_id += group_flash.size
    state.event_id += event_group.size
    return Lightning(
        flash={"id": flash_ids, "lat": f_lat, "lon": f_lon, "t_first": t_first, "t_last": t_last,
               "energy": f_energy, "area": f_area},
        group={"id": group_ids, "lat": g_lat, "lon": g_lon, "time": group_time, "energy": g_energy,
               "area": g_area, "parent": flash_ids[group_flash]},
        event={"id": event_ids, "lat": lat, "lon": lon, "time": event_time, "energy": energy,
               "parent": group_ids[event_group]},
    )  # fmt: skip
