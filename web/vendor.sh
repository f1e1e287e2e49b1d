#!/usr/bin/env bash
# Copies the pinned front-end libraries (web/package.json) into the package, so that `sitewatch serve`
# works with no network. Run from anywhere; needs npm. The copies are committed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
vendor="$here/../src/sitewatch/web/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && cp "$here/package.json" . && npm install --no-audit --no-fund --ignore-scripts --silent)
m="$work/node_modules"
rm -rf "$vendor" && mkdir -p "$vendor/leaflet" "$vendor/leaflet-draw" "$vendor/uplot"
cp -r "$m/leaflet/dist/leaflet.js" "$m/leaflet/dist/leaflet.css" "$m/leaflet/dist/images" "$m/leaflet/LICENSE" "$vendor/leaflet/"
cp -r "$m/leaflet-draw/dist/leaflet.draw.js" "$m/leaflet-draw/dist/leaflet.draw.css" "$m/leaflet-draw/dist/images" "$vendor/leaflet-draw/"
rm -f "$vendor"/leaflet-draw/images/layers* "$vendor"/leaflet-draw/images/marker*
printf 'leaflet-draw 1.0.4, MIT licence (package.json of the npm package; the package ships no LICENSE file).\nCopyright 2012-2017 Jon West, Jacob Toye, and Leaflet\n' > "$vendor/leaflet-draw/LICENSE"
cp "$m/uplot/dist/uPlot.iife.min.js" "$m/uplot/dist/uPlot.min.css" "$m/uplot/LICENSE" "$vendor/uplot/"
echo "vendored into $vendor"
