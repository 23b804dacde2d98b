// The ltgcast viewer: the probability PNG of a grid, its contours and GLM flashes drawn over it in
// pixel coordinates (crs=pixel), a time slider over the sector's recent grids, and a point series.
"use strict";

// `pinned` is the grid the forecaster chose with the slider (by id: the 3-hour list slides under it);
// `seq` numbers each show() so a slow answer for an older choice never paints over a newer one.
const state = { sector: "C", grids: [], index: -1, shown: null, pinned: null, seq: 0 };
const $ = (id) => document.getElementById(id);

async function getJson(url) {
  const response = await fetch(url);
  const doc = await response.json();
  if (!response.ok) throw new Error(doc.error || `${url}: HTTP ${response.status}`);
  return doc;
}

function showError(message) {
  $("error").textContent = message;
  document.body.dataset.error = message;
}

function svgElement(name, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function drawContours(doc) {
  const group = svgElement("g", { id: "contours" });
  let lines = 0;
  for (const feature of doc.features) {
    const cls = `level-${Math.round(feature.properties.level * 100)}`;
    for (const line of feature.geometry.coordinates) {
      const points = line.map(([x, y]) => `${x + 0.5},${y + 0.5}`).join(" ");
      group.appendChild(svgElement("polyline", { points, class: cls }));
      lines += 1;
    }
  }
  return [group, lines];
}

function drawFlashes(doc, radius) {
  const group = svgElement("g", { id: "flashes" });
  for (const feature of doc.features) {
    const [x, y] = feature.geometry.coordinates;
    group.appendChild(svgElement("circle", { cx: x + 0.5, cy: y + 0.5, r: radius }));
  }
  return [group, doc.features.length];
}

async function show(grid) {
  const seq = ++state.seq;
  const [height, width] = grid.shape;
  const [contours, flashes] = await Promise.all([
    getJson(`${grid.links.contours}?crs=pixel`),
    getJson(`${grid.links.flashes}?crs=pixel`),
  ]);
  if (seq !== state.seq) return; // a newer choice was made meanwhile
  await new Promise((resolve, reject) => {
    const img = $("overlay");
    img.onload = resolve;
    img.onerror = () => reject(new Error(`cannot load ${grid.links.png}`));
    img.src = grid.links.png;
  });
  if (seq !== state.seq) return;
  const svg = $("vector");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();
  const [lineGroup, lines] = drawContours(contours);
  const [flashGroup, dots] = drawFlashes(flashes, Math.max(width, height) / 400);
  svg.append(lineGroup, flashGroup);
  $("scan").textContent = grid.scan_start;
  $("valid").textContent = grid.valid_time;
  $("model").textContent = `${grid.model_name} v${grid.model_version}`;
  $("glm").textContent = `${grid.glm_granules_used} used, ${grid.glm_granules_missing} missing`;
  $("grid-id").textContent = grid.grid_id;
  $("slider-label").textContent = grid.scan_start;
  state.shown = grid.grid_id;
  Object.assign(document.body.dataset, { gridId: grid.grid_id, contourLines: lines, flashes: dots, state: "ready" });
}

async function refresh() {
  try {
    const doc = await getJson(`/v1/grids?sector=${state.sector}&hours=3`);
    state.grids = doc.grids;
    $("empty").hidden = state.grids.length > 0;
    if (!state.grids.length) { document.body.dataset.state = "empty"; return; }
    const slider = $("slider");
    slider.max = String(state.grids.length - 1);
    const pinned = state.grids.findIndex((g) => g.grid_id === state.pinned);
    state.index = $("live").checked || pinned < 0 ? state.grids.length - 1 : pinned;
    slider.value = String(state.index);
    document.body.dataset.grids = state.grids.length;
    const grid = state.grids[state.index];
    if (grid.grid_id !== state.shown) await show(grid);
    $("error").textContent = "";
  } catch (err) {
    showError(err.message);
  }
}

async function pointSeries(event) {
  event.preventDefault();
  try {
    const q = new URLSearchParams({ lat: $("lat").value, lon: $("lon").value, hours: "3" });
    const doc = await getJson(`/v1/points?${q}`);
    const body = $("series").querySelector("tbody");
    body.replaceChildren();
    for (const p of doc.series) {
      const row = document.createElement("tr");
      const value = p.probability === null ? "–" : `${Math.round(p.probability * 100)} %`;
      row.innerHTML = `<td>${p.scan_start.slice(11, 16)}</td><td>${value}</td>`;
      body.appendChild(row);
    }
    document.body.dataset.points = doc.series.length;
  } catch (err) {
    showError(err.message);
  }
}

$("sector").addEventListener("change", (e) => {
  Object.assign(state, { sector: e.target.value, index: -1, shown: null, pinned: null });
  refresh();
});
let sliding = null;
$("slider").addEventListener("input", (e) => {
  state.index = Number(e.target.value);
  state.pinned = state.grids[state.index].grid_id;
  $("live").checked = state.index === state.grids.length - 1;
  $("slider-label").textContent = state.grids[state.index].scan_start;
  clearTimeout(sliding); // one request per pause of the slider, not one per step it passed
  sliding = setTimeout(() => show(state.grids[state.index]).catch((err) => showError(err.message)), 150);
});
$("point-form").addEventListener("submit", pointSeries);
const initial = new URLSearchParams(location.search).get("sector");
if (initial) { state.sector = initial; $("sector").value = initial; }
refresh();
setInterval(refresh, 10000);
