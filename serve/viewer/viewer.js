// The ltgcast forecaster's viewer: a Leaflet map (Web Mercator, nothing fetched from outside the service) with
// an offline basemap (Natural Earth land and borders, US states and counties, GeoNames cities, a graticule), the
// band-13 infrared image of each scan as a greyscale underlay, the probability field and its 10/25/50/75 %
// contours, the GLM flashes the grid was made from, an animation over the sector's last hour, a hover readout,
// a click-for-time-series chart, configured sites with their alert state, the grid's age with a stale-feed
// banner, and a warning when GLM granules were missing.
//
// State for tests and people lives on <body data-…>: state (loading|ready|empty|error), grid-id, frames, frame,
// underlay (loaded|none), contour-rings, flashes, basemap (loaded), stale (1|0), glm-warning (1|0), points,
// chart (drawn), sites.
"use strict";

const LEVEL_COLOURS = { 10: "#2f6bff", 25: "#00e5ff", 50: "#3cff3c", 75: "#c040ff" };
const SECTOR_NAMES = { C: "CONUS", F: "Full disk", M1: "Mesoscale 1", M2: "Mesoscale 2" };
// A grid older than this (minutes, by sector: scans every 1, 5, 10 min) means the feed has stopped.
const STALE_MINUTES = { M1: 10, M2: 10, C: 20, F: 30 };
const FRAME_MS = 600; // animation step
const REFRESH_MS = 15000;
const FLASH_RADIUS_KM = 20;

const $ = (id) => document.getElementById(id);
const body = document.body;
const state = {
  sector: null, sectors: [], frames: [], index: -1, shown: null, pinned: false, seq: 0,
  clockOffsetMs: 0, playing: null, fitted: null, valueImage: null, point: null,
  maps: new Map(), vectors: new Map(),
};

// -- small helpers ---------------------------------------------------------------------------------------------
async function getJson(url) {
  const response = await fetch(url);
  let doc = null;
  try { doc = await response.json(); } catch { doc = null; }
  if (!response.ok) {
    const error = new Error((doc && doc.error) || `${url}: HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return doc;
}

function utc(iso) { // "2024-06-15 18:05 UTC" from any ISO 8601 UTC string (milliseconds or not)
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.toISOString().slice(0, 10)} ${d.toISOString().slice(11, 16)} UTC`;
}

function hhmm(iso) { return new Date(iso).toISOString().slice(11, 16); }

function duration(ms) { // "3 min", "2 h 05 min", "2 y 143 d"
  const minutes = Math.floor(Math.abs(ms) / 60000);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${String(minutes % 60).padStart(2, "0")} min`;
  const days = Math.floor(hours / 24);
  if (days < 365) return `${days} d`;
  return `${Math.floor(days / 365)} y ${days % 365} d`;
}

function degrees(lat, lng) {
  const ns = lat >= 0 ? "N" : "S";
  const ew = lng >= 0 ? "E" : "W";
  return `${Math.abs(lat).toFixed(2)}° ${ns} ${Math.abs(lng).toFixed(2)}° ${ew}`;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
  if (message) body.dataset.error = message; else delete body.dataset.error;
}

function serverNow() { return Date.now() + state.clockOffsetMs; }

function label(text) { // tooltip content as text, never HTML (site names come from a file, city names from GeoNames)
  const span = document.createElement("span");
  span.textContent = text;
  return span;
}

function cached(cache, key, make) { // a promise per key; a failed one is forgotten so the next look tries again
  if (!cache.has(key)) {
    const promise = make();
    cache.set(key, promise);
    promise.catch(() => { if (cache.get(key) === promise) cache.delete(key); });
  }
  return cache.get(key);
}

// -- the map and its offline basemap ---------------------------------------------------------------------------
if (typeof L === "undefined" || typeof topojson === "undefined" || typeof uPlot === "undefined") {
  body.dataset.state = "error";
  showError("The viewer's map packages are not installed on this server: run make install (npm ci and the build).");
  throw new Error("viewer packages missing");
}

const map = L.map("map", { zoomSnap: 0.25, minZoom: 2, maxZoom: 11, worldCopyJump: false, preferCanvas: true,
                           attributionControl: true });
map.attributionControl.setPrefix("");
map.attributionControl.addAttribution(
  "Basemap: Natural Earth (world-atlas), US Census (us-atlas), GeoNames cities · GOES-R ABI and GLM: NOAA");
L.control.scale({ imperial: false }).addTo(map);
map.fitBounds([[22, -128], [51, -64]]);

for (const [name, z] of [["land", 210], ["underlay", 300], ["probability", 350], ["borders", 420],
                         ["contours", 440], ["flashes", 460], ["sites", 480], ["cities", 490], ["point", 500]]) {
  map.createPane(name).style.zIndex = String(z);
}
for (const name of ["land", "underlay", "probability", "borders", "contours", "flashes", "cities"]) {
  map.getPane(name).style.pointerEvents = "none";
}
const renderers = {};
for (const name of ["land", "borders", "contours", "flashes", "sites", "cities", "point"]) {
  renderers[name] = L.canvas({ pane: name, padding: 0.2 });
}

const layers = {
  underlay: null, probability: null, contours: L.layerGroup().addTo(map), flashes: L.layerGroup().addTo(map),
  sites: L.layerGroup().addTo(map), cities: L.layerGroup().addTo(map), counties: null, graticule: L.layerGroup(),
  point: L.layerGroup().addTo(map),
};

async function loadBasemap() {
  const names = ["land-50m", "countries-50m", "states-10m", "counties-10m", "cities"];
  const [land, countries, states, counties, cities] = await Promise.all(
    names.map((n) => getJson(`/static/vendor/${n}.json`)));
  const line = (colour, weight, extra = {}) => ({ renderer: renderers.borders, pane: "borders", color: colour,
                                                  weight, opacity: 0.9, fill: false, interactive: false, ...extra });
  L.geoJSON(topojson.feature(land, land.objects.land), {
    renderer: renderers.land, pane: "land", interactive: false,
    style: { stroke: false, fillColor: "#2f3a32", fillOpacity: 1 },
  }).addTo(map);
  L.geoJSON(topojson.mesh(land, land.objects.land), { style: line("#cfd8df", 1.1), interactive: false }).addTo(map);
  L.geoJSON(topojson.mesh(countries, countries.objects.countries, (a, b) => a !== b),
            { style: line("#e6e6e6", 1.3), interactive: false }).addTo(map);
  L.geoJSON(topojson.mesh(states, states.objects.states, (a, b) => a !== b),
            { style: line("#c4ccd3", 0.9, { dashArray: "4 3" }), interactive: false }).addTo(map);
  layers.counties = L.geoJSON(topojson.mesh(counties, counties.objects.counties, (a, b) => a !== b),
                              { style: line("#8d959c", 0.45), interactive: false });
  state.cities = cities.cities;
  drawGraticule();
  onZoom();
  body.dataset.basemap = "loaded";
}

function drawGraticule() {
  layers.graticule.clearLayers();
  const zoom = map.getZoom();
  const step = zoom >= 7 ? 1 : zoom >= 5 ? 5 : 10;
  const style = { renderer: renderers.borders, pane: "borders", color: "#ffffff", weight: 0.5, opacity: 0.35,
                  dashArray: "2 4", interactive: false };
  for (let lat = -80; lat <= 80; lat += step) {
    layers.graticule.addLayer(L.polyline([[lat, -180], [lat, 180]], style));
  }
  for (let lon = -180; lon <= 180; lon += step) {
    const points = [];
    for (let lat = -80; lat <= 80; lat += 5) points.push([lat, lon]);
    layers.graticule.addLayer(L.polyline(points, style));
  }
  layers.graticule.addTo(map);
}

function drawCities() {
  layers.cities.clearLayers();
  if (!state.cities) return;
  const zoom = map.getZoom();
  const least = zoom < 4 ? 3e6 : zoom < 5 ? 1e6 : zoom < 6 ? 5e5 : zoom < 7 ? 2.5e5 : 1e5;
  const view = map.getBounds().pad(-0.02);
  const placed = []; // label boxes already drawn (container pixels): a smaller city's label never overlaps them
  for (const [name, lon, lat, population] of state.cities) { // biggest first
    if (population < least || placed.length >= 80 || !view.contains([lat, lon])) continue;
    const at = map.latLngToContainerPoint([lat, lon]);
    const box = [at.x - 4, at.y - 9, at.x + 10 + 7.5 * name.length, at.y + 9];
    if (placed.some((b) => box[0] < b[2] && b[0] < box[2] && box[1] < b[3] && b[1] < box[3])) continue;
    placed.push(box);
    L.circleMarker([lat, lon], { renderer: renderers.cities, pane: "cities", radius: 2.5, color: "#000",
                                 weight: 1, fillColor: "#fff", fillOpacity: 1, interactive: false })
      .bindTooltip(label(name), { permanent: true, direction: "right", offset: [4, 0], className: "city", pane: "cities" })
      .addTo(layers.cities);
  }
}

let lastZoomStep = null;
function onZoom() {
  const zoom = map.getZoom();
  if (layers.counties) {
    if (zoom >= 6.5) layers.counties.addTo(map); else layers.counties.remove();
  }
  const step = zoom >= 7 ? 1 : zoom >= 5 ? 5 : 10;
  if (step !== lastZoomStep) { lastZoomStep = step; drawGraticule(); }
  drawCities();
}
map.on("zoomend moveend", onZoom);

// -- sectors, frames and what one grid shows -------------------------------------------------------------------
async function loadSectors() {
  const doc = await getJson("/v1/sectors");
  state.clockOffsetMs = new Date(doc.now).getTime() - Date.now();
  state.sectors = doc.sectors;
  const select = $("sector");
  select.replaceChildren();
  for (const entry of doc.sectors) {
    const option = document.createElement("option");
    option.value = entry.sector;
    const age = entry.latest ? serverNow() - new Date(entry.latest.scan_start).getTime() : null;
    const newest = entry.latest === null ? "no data"
      : `newest ${age < 86400000 ? hhmm(entry.latest.scan_start) : utc(entry.latest.scan_start)}`;
    option.textContent = `${SECTOR_NAMES[entry.sector]} (${newest})`;
    select.appendChild(option);
  }
  if (state.sector === null) {
    const asked = new URLSearchParams(location.search).get("sector");
    state.sector = doc.sectors.some((s) => s.sector === asked) ? asked : (doc.default || "C");
  }
  select.value = state.sector;
  return doc;
}

function mapInfo(grid) {
  return cached(state.maps, grid.grid_id, () => getJson(`/v1/grids/${grid.grid_id}/map.json`));
}

function vectors(grid) {
  return cached(state.vectors, grid.grid_id, () => Promise.all([
    getJson(`${grid.links.contours}?levels=0.1,0.25,0.5,0.75`),
    getJson(grid.links.flashes),
  ]));
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`cannot load ${url}`));
    img.src = url;
  });
}

function setOverlay(name, url, bounds) {
  if (!url) {
    if (layers[name]) { layers[name].remove(); layers[name] = null; }
    return;
  }
  if (layers[name]) {
    layers[name].setUrl(url);
    layers[name].setBounds(L.latLngBounds(bounds));
  } else {
    layers[name] = L.imageOverlay(url, bounds, { pane: name, interactive: false }).addTo(map);
  }
}

function valueSampler(img, info) { // the probability under a point, read back from the value PNG's bytes
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(img, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  const [[south, west], [north, east]] = info.bounds;
  const project = (lat, lng) => L.CRS.EPSG3857.project(L.latLng(lat, lng));
  const low = project(south, west);
  const high = project(north, east);
  return (latlng) => {
    const p = project(latlng.lat, latlng.lng);
    const col = Math.floor(((p.x - low.x) / (high.x - low.x)) * canvas.width);
    const row = Math.floor(((high.y - p.y) / (high.y - low.y)) * canvas.height);
    if (col < 0 || row < 0 || col >= canvas.width || row >= canvas.height) return null;
    const byte = pixels[(row * canvas.width + col) * 4];
    return byte === info.value_missing ? null : byte * info.value_scale;
  };
}

function drawVectors(contours, flashes) {
  layers.contours.clearLayers();
  layers.flashes.clearLayers();
  let rings = 0;
  const features = [...contours.features].sort((a, b) => a.properties.level - b.properties.level);
  for (const feature of features) {
    const colour = LEVEL_COLOURS[Math.round(feature.properties.level * 100)] || "#ffffff";
    const geometry = feature.geometry;
    const polygons = geometry.type === "MultiPolygon" ? geometry.coordinates
      : geometry.type === "Polygon" ? [geometry.coordinates] : [];
    for (const polygon of polygons) rings += polygon.length;
    const options = { renderer: renderers.contours, pane: "contours", interactive: false, fill: false };
    L.geoJSON(feature, { ...options, style: { ...options, color: "#000", weight: 4, opacity: 0.55 } })
      .addTo(layers.contours);
    L.geoJSON(feature, { ...options, style: { ...options, color: colour, weight: 2.2, opacity: 1 } })
      .addTo(layers.contours);
  }
  for (const feature of flashes.features) {
    const [lng, lat] = feature.geometry.coordinates;
    L.circleMarker([lat, lng], { renderer: renderers.flashes, pane: "flashes", radius: 2.6, color: "#000",
                                 weight: 0.8, fillColor: "#ffe14d", fillOpacity: 0.95, interactive: false })
      .addTo(layers.flashes);
  }
  return [rings, flashes.features.length];
}

async function showFrame(index) {
  const grid = state.frames[index];
  if (!grid) return;
  const seq = ++state.seq;
  const info = await mapInfo(grid);
  const [[contours, flashes], valueImg] = await Promise.all([vectors(grid), loadImage(info.layers.value)]);
  if (info.layers.ir) await loadImage(info.layers.ir); // decoded before it replaces the previous underlay
  await loadImage(info.layers.probability);
  if (seq !== state.seq) return; // a newer choice was made meanwhile
  setOverlay("underlay", info.layers.ir, info.bounds);
  setOverlay("probability", info.layers.probability, info.bounds);
  const [rings, dots] = drawVectors(contours, flashes);
  state.valueImage = valueSampler(valueImg, info);
  state.index = index;
  state.shown = grid.grid_id;
  if (state.fitted !== state.sector) { map.fitBounds(info.bounds); state.fitted = state.sector; }
  showGrid(grid, index);
  Object.assign(body.dataset, { gridId: grid.grid_id, frame: String(index), contourRings: String(rings),
                                flashes: String(dots), underlay: info.layers.ir ? "loaded" : "none",
                                state: "ready" });
}

function showGrid(grid, index) {
  $("scan").textContent = utc(grid.scan_start);
  $("valid").textContent = utc(grid.valid_time);
  $("frame-time").textContent = utc(grid.scan_start);
  $("frame-count").textContent = `${index + 1} / ${state.frames.length}`;
  $("slider").value = String(index);
  $("satellite").textContent = `${grid.satellite} · ${SECTOR_NAMES[grid.sector]}`;
  $("model").textContent = `${grid.model_name} v${grid.model_version}`;
  const total = grid.glm_granules_used + grid.glm_granules_missing;
  $("glm").textContent = `${grid.glm_granules_used} of ${total} used` +
    (grid.glm_granules_missing ? `, ${grid.glm_granules_missing} missing` : "");
  $("created").textContent = grid.created ? utc(grid.created) : "–";
  const links = $("links");
  links.replaceChildren();
  for (const [label, href] of [["NetCDF", grid.links.netcdf], ["contours", grid.links.contours],
                               ["flashes", grid.links.flashes]]) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = label;
    links.appendChild(a);
  }
  const warn = $("glm-warning");
  warn.hidden = !grid.glm_granules_missing;
  warn.textContent = grid.glm_granules_missing
    ? `This grid was made with ${grid.glm_granules_missing} of ${total} GLM granules missing: its lightning ` +
      "input is incomplete and the probabilities may be too low."
    : "";
  body.dataset.glmWarning = grid.glm_granules_missing ? "1" : "0";
  showAge();
}

function showAge() {
  const newest = state.frames[state.frames.length - 1];
  if (!newest) return;
  const shown = state.frames[state.index] || newest;
  const age = serverNow() - new Date(shown.scan_start).getTime();
  const newestAge = serverNow() - new Date(newest.scan_start).getTime();
  const stale = newestAge > STALE_MINUTES[state.sector] * 60000;
  const badge = $("age");
  badge.textContent = age < 0 ? "from the future" : `${duration(age)} old`;
  badge.classList.toggle("stale", stale || age < 0);
  const banner = $("stale");
  banner.hidden = !stale;
  banner.textContent = stale
    ? `Stale feed: the newest ${SECTOR_NAMES[state.sector]} grid is ${duration(newestAge)} old ` +
      `(scan ${utc(newest.scan_start)}). These are not current probabilities.`
    : "";
  body.dataset.stale = stale ? "1" : "0";
}

async function refresh() {
  try {
    await loadSectors();
    const doc = await getJson(`/v1/grids?sector=${state.sector}&hours=1`);
    const previous = state.frames[state.index];
    state.frames = doc.grids;
    body.dataset.frames = String(state.frames.length);
    const slider = $("slider");
    slider.max = String(Math.max(0, state.frames.length - 1));
    if (!state.frames.length) {
      const withData = state.sectors.filter((s) => s.latest).map((s) => SECTOR_NAMES[s.sector]);
      showError(`No ${SECTOR_NAMES[state.sector]} grid yet.` +
                (withData.length ? ` Sectors with grids: ${withData.join(", ")}.` : ""));
      body.dataset.state = "empty";
      return;
    }
    showError("");
    let index = state.frames.length - 1;
    if (!$("live").checked && previous) {
      const kept = state.frames.findIndex((g) => g.grid_id === previous.grid_id);
      if (kept >= 0) index = kept;
    }
    if (state.frames[index].grid_id !== state.shown) await showFrame(index);
    else showAge();
    const pruned = new Set(state.frames.map((g) => g.grid_id));
    for (const cache of [state.maps, state.vectors]) {
      for (const key of cache.keys()) if (!pruned.has(key)) cache.delete(key);
    }
  } catch (err) {
    showError(err.message);
    if (body.dataset.state === "loading") body.dataset.state = "error";
  }
}

// -- the animation ---------------------------------------------------------------------------------------------
function stop() {
  if (state.playing) clearInterval(state.playing);
  state.playing = null;
  $("play").textContent = "▶";
  $("play").setAttribute("aria-label", "play the last hour");
}

function play() {
  if (state.frames.length < 2) return;
  $("live").checked = false;
  $("play").textContent = "❚❚";
  $("play").setAttribute("aria-label", "pause");
  let busy = false;
  state.playing = setInterval(async () => {
    if (busy) return;
    busy = true;
    try { await showFrame((state.index + 1) % state.frames.length); } catch (err) { showError(err.message); }
    busy = false;
  }, FRAME_MS);
}

$("play").addEventListener("click", () => (state.playing ? stop() : play()));
let sliding = null;
$("slider").addEventListener("input", (e) => {
  stop();
  const index = Number(e.target.value);
  $("live").checked = index === state.frames.length - 1;
  $("frame-time").textContent = utc(state.frames[index].scan_start);
  clearTimeout(sliding); // one request per pause of the slider, not one per step it passed
  sliding = setTimeout(() => showFrame(index).catch((err) => showError(err.message)), 120);
});
$("live").addEventListener("change", () => { if ($("live").checked) { stop(); refresh(); } });
$("sector").addEventListener("change", (e) => {
  stop();
  Object.assign(state, { sector: e.target.value, frames: [], index: -1, shown: null });
  const url = new URL(location.href);
  url.searchParams.set("sector", state.sector);
  history.replaceState(null, "", url);
  refresh();
});

// -- hover readout, point series, sites ------------------------------------------------------------------------
map.on("mousemove", (e) => {
  const p = state.valueImage ? state.valueImage(e.latlng) : null;
  const text = p === null ? "no data here" : `P ${Math.round(p * 100)} %`;
  $("readout").textContent = `${degrees(e.latlng.lat, e.latlng.lng)} · ${text}`;
  body.dataset.hover = p === null ? "" : String(Math.round(p * 100));
});
map.on("click", (e) => { const at = e.latlng.wrap(); pointSeries(at.lat, at.lng); }); // lon in [-180, 180]
$("point-form").addEventListener("submit", (e) => {
  e.preventDefault();
  pointSeries(Number($("lat").value), Number($("lon").value));
});

let chart = null;
async function pointSeries(lat, lon) {
  if (!Number.isFinite(lat) || !Number.isFinite(lon)) { showError("lat and lon must be numbers"); return; }
  $("lat").value = lat.toFixed(3);
  $("lon").value = lon.toFixed(3);
  layers.point.clearLayers();
  L.circleMarker([lat, lon], { renderer: renderers.point, pane: "point", radius: 7, color: "#fff", weight: 3,
                               fillColor: "#ff00aa", fillOpacity: 0.9 }).addTo(layers.point);
  L.circle([lat, lon], { renderer: renderers.point, pane: "point", radius: FLASH_RADIUS_KM * 1000,
                         color: "#ff66cc", weight: 1, dashArray: "3 3", fill: false }).addTo(layers.point);
  try {
    const q = new URLSearchParams({ lat: lat.toFixed(4), lon: lon.toFixed(4), hours: "3", sectors: state.sector,
                                    flash_radius_km: String(FLASH_RADIUS_KM) });
    const doc = await getJson(`/v1/points?${q}`);
    drawChart(doc);
    body.dataset.points = String(doc.series.length);
    showError("");
  } catch (err) {
    showError(err.message);
  }
}

function drawChart(doc) {
  const points = doc.series.filter((p) => p.probability !== null);
  const note = $("point-note");
  note.textContent = `${degrees(doc.lat, doc.lon)}: ${points.length} grids` +
    (doc.flashes ? `, ${doc.flashes.count} GLM flashes within ${doc.flashes.radius_km} km` : "");
  const times = points.map((p) => new Date(p.scan_start).getTime() / 1000);
  const probs = points.map((p) => Math.round(p.probability * 1000) / 10);
  const bins = new Map(); // flashes per 5 minutes
  for (const t of (doc.flashes ? doc.flashes.times : [])) {
    const bin = Math.floor(new Date(t).getTime() / 300000) * 300;
    bins.set(bin, (bins.get(bin) || 0) + 1);
  }
  const binTimes = [...bins.keys()].sort((a, b) => a - b);
  const data = uPlot.join([[times, probs], [binTimes, binTimes.map((b) => bins.get(b))]]);
  const element = $("chart");
  if (chart) chart.destroy();
  const width = Math.max(240, element.clientWidth || 300);
  chart = new uPlot({
    width, height: 190, tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
    scales: { "%": { range: [0, 100] }, n: { range: (u, lo, hi) => [0, Math.max(5, hi)] } },
    axes: [
      { stroke: "#c9d1d9", grid: { stroke: "#2a323b" }, values: (u, ticks) => ticks.map((t) => hhmm(t * 1000)) },
      { scale: "%", stroke: "#c9d1d9", grid: { stroke: "#2a323b" }, values: (u, t) => t.map((v) => `${v}%`) },
      { scale: "n", side: 1, stroke: "#ffe14d", grid: { show: false } },
    ],
    series: [
      { label: "UTC", value: (u, t) => (t === null ? "–" : hhmm(t * 1000)) },
      { label: "P", scale: "%", stroke: "#00e5ff", width: 2, spanGaps: true, value: (u, v) => (v === null ? "–" : `${v} %`) },
      { label: "flashes / 5 min", scale: "n", stroke: "#ffe14d", fill: "rgba(255,225,77,0.35)",
        paths: uPlot.paths.bars({ size: [0.9, 14] }), points: { show: false } },
    ],
  }, data, element);
  $("point-panel").scrollIntoView({ block: "nearest" });
  body.dataset.chart = "drawn";
}

const siteMarkers = new Map();
async function loadSites() {
  let doc;
  try {
    doc = await getJson("/v1/alerts");
  } catch (err) {
    if (err.status === 404) { $("sites-panel").hidden = true; return; }
    throw err;
  }
  const list = $("sites");
  list.replaceChildren();
  layers.sites.clearLayers();
  siteMarkers.clear();
  const order = { alert: 0, clear: 1, unknown: 2 };
  const sites = doc.sites.map((s) => ({ ...s, state: String(s.state).toLowerCase() }))
    .sort((a, b) => (order[a.state] - order[b.state]) || ((b.probability || 0) - (a.probability || 0)));
  for (const site of sites) {
    const item = document.createElement("li");
    const p = site.probability === null || site.probability === undefined ? "–"
      : `${Math.round(site.probability * 100)} %`;
    const since = site.since ? ` since ${utc(site.since)}` : "";
    item.title = `${site.name}: ${site.state}${since}; alert at ${Math.round(site.threshold * 100)} % within ` +
      `${site.radius_km} km, all-clear after ${site.hold_minutes} min below`;
    item.innerHTML = `<i class="sym site ${site.state}"></i><b></b><span class="name"></span><span class="p"></span>`;
    item.querySelector("b").textContent = site.id;
    item.querySelector(".name").textContent = site.name;
    item.querySelector(".p").textContent = p;
    item.dataset.site = site.id;
    item.dataset.state = site.state;
    item.addEventListener("click", () => { map.setView([site.lat, site.lon], Math.max(map.getZoom(), 7));
                                           pointSeries(site.lat, site.lon); });
    list.appendChild(item);
    const colour = { alert: "#ff2a2a", clear: "#2ecc40" }[site.state] || "#777777";
    const marker = L.circleMarker([site.lat, site.lon], { renderer: renderers.sites, pane: "sites", radius: 5.5,
                                                          color: "#fff", weight: 2, fillColor: colour,
                                                          fillOpacity: 1 })
      .bindTooltip(label(`${site.id} ${site.name}: ${site.state.toUpperCase()} · P ${p}`))
      .on("click", (e) => { L.DomEvent.stopPropagation(e); pointSeries(site.lat, site.lon); })
      .addTo(layers.sites);
    siteMarkers.set(site.id, marker);
  }
  const alerts = sites.filter((s) => s.state === "alert").length;
  $("sites-note").textContent = sites.length ? `(${alerts} in alert of ${sites.length})` : "(none configured)";
  body.dataset.sites = String(sites.length);
}

// -- start -----------------------------------------------------------------------------------------------------
loadBasemap().catch((err) => showError(`basemap: ${err.message}`));
refresh().then(() => loadSites()).catch((err) => showError(err.message));
setInterval(() => { if (!state.playing) refresh(); loadSites().catch(() => {}); }, REFRESH_MS);
setInterval(showAge, 30000);
