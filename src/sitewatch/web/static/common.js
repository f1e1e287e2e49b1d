// Shared by every page of the workbench: page data, the JSON API with its CSRF header, DOM building
// (text only: hostile strings are never parsed as HTML), formats with units, URL state, maps.

export const page = JSON.parse(document.getElementById("page-data").textContent);

/** The value of cookie NAME, or "". */
function cookie(name) {
  const found = document.cookie.split("; ").find((part) => part.startsWith(`${name}=`));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
}

export class ApiError extends Error {}

/**
 * Call the JSON API. BODY (an object) is sent as JSON; RAW (a Blob or string) as is with TYPE.
 * Writes carry the CSRF cookie back in X-CSRF-Token (the server's double-submit check).
 */
export async function api(path, { method = "GET", body, raw, type } = {}) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin" };
  if (method !== "GET") headers["X-CSRF-Token"] = cookie("sitewatch_csrf");
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  } else if (raw !== undefined) {
    headers["Content-Type"] = type;
    init.body = raw;
  }
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({ detail: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw new ApiError(data.detail || `${response.status} ${response.statusText}`);
  return data;
}

/** The API URL of a site's resource: /api/sites/NAME/REST. */
export function siteApi(name, rest = "") {
  return `/api/sites/${encodeURIComponent(name)}${rest}`;
}

/** A page of a site (VIEW "", "compare" or "search") with query PARAMS (null values left out). */
export function sitePage(name, view = "", params = {}) {
  const path = `/sites/${encodeURIComponent(name)}${view ? `/${view}` : ""}`;
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== ""));
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

/**
 * Build an element. ATTRS: class, text, testid, dataset (object), on (object of listeners), any
 * other attribute; CHILDREN: nodes or strings (as text).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "testid") node.dataset.testid = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "on") for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An SVG element with attributes. */
export function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

const grouped = new Intl.NumberFormat("en-GB", { maximumFractionDigits: 0 });

export const fmt = {
  area(m2) {
    if (m2 === null || m2 === undefined) return "–";
    return m2 >= 100 ? `${grouped.format(m2)} m²` : `${m2.toFixed(1)} m²`;
  },
  metres(m) {
    return m === null || m === undefined ? "–" : `${m < 10 ? m.toFixed(2) : m.toFixed(1)} m`;
  },
  pct(share) {
    return share === null || share === undefined ? "–" : `${(share * 100).toFixed(share > 0 && share < 0.01 ? 1 : 0)} %`;
  },
  num(value, digits = 3) {
    return value === null || value === undefined ? "–" : Number(value).toPrecision(digits);
  },
  /** "2024-06-11 08:06 UTC" from an ISO time. */
  datetime(iso) {
    return iso ? `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC` : "–";
  },
  day(iso) {
    return iso ? iso.slice(0, 10) : "–";
  },
};

/** The page URL's query parameters as an object. */
export function readParams() {
  return Object.fromEntries(new URLSearchParams(window.location.search));
}

/** Put STATE in the page URL (null and "" values dropped), so that reloading restores the view. */
export function writeParams(state) {
  const query = new URLSearchParams(Object.entries(state).filter(([, v]) => v !== null && v !== undefined && v !== ""));
  const text = query.toString();
  const url = `${window.location.pathname}${text ? `?${text}` : ""}`;
  if (url !== `${window.location.pathname}${window.location.search}`) window.history.replaceState(null, "", url);
}

/** Show an error in the page's banner (one line, as the API gives it). */
export function showError(error) {
  const banner = document.getElementById("error-banner");
  banner.textContent = error instanceof Error ? error.message : String(error);
  banner.hidden = false;
}

/** Hide the error banner. */
export function clearError() {
  document.getElementById("error-banner").hidden = true;
}

/** Say the imagery is synthetic, where it is. */
export function markSynthetic(synthetic) {
  document.getElementById("synthetic-banner").hidden = !synthetic;
}

/** Tell the browser tests (and anyone waiting) that the page has its data on screen. */
export function ready() {
  document.body.dataset.ready = "1";
}

/** Run a page's start-up; an error goes to the banner and the page still counts as loaded. */
export async function boot(start) {
  try {
    await start();
  } catch (error) {
    showError(error);
  } finally {
    ready();
  }
}

/**
 * A Leaflet map with no base layer (the machine may be offline): imagery tiles and outlines only.
 * No fades: a closing popup would otherwise catch clicks meant for the map for a moment.
 */
export function baseMap(id, options = {}) {
  // Whole zoom levels only: a fractional zoom scales every tile and Chromium leaves hairline seams
  // between them, which read as features on imagery.
  const map = L.map(id, { zoomSnap: 1, maxZoom: 22, fadeAnimation: false, attributionControl: true, ...options });
  map.attributionControl.setPrefix(false);
  L.control.scale({ imperial: false, maxWidth: 160 }).addTo(map);
  return map;
}

/** A layer of the site's outline and its zones (named in tooltips). */
export function outlineLayer(site, { interactive = false } = {}) {
  const group = L.featureGroup();
  L.geoJSON(site.outline, { interactive, style: { className: "sw-site-outline", weight: 2, fill: false } }).addTo(group);
  for (const zone of site.zones) {
    const layer = L.geoJSON(zone.geometry, { interactive, style: { className: "sw-zone", weight: 1, dashArray: "4 3", fillOpacity: 0.04 } });
    layer.bindTooltip(el("span", { text: zone.name }), { direction: "center", className: "sw-zone-label" });
    layer.addTo(group);
  }
  return group;
}

/** Leaflet bounds of a [west, south, east, north] box. */
export function bboxBounds(bbox) {
  return L.latLngBounds([bbox[1], bbox[0]], [bbox[3], bbox[2]]);
}

/** Resolves once LAYER's visible tiles have loaded (or failed), or after TIMEOUT_MS whatever happened. */
export function tilesLoaded(layer, timeoutMs = 15000) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    layer.once("load", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** TEXT with HTML's special characters escaped, for the few Leaflet strings it parses as HTML. */
export function escapeHtml(text) {
  const entities = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  return String(text).replace(/[&<>"']/g, (c) => entities[c]);
}

/** A tile layer of one observation (the tiler's URL template), credited to its provider. */
export function imageLayer(obs, options = {}) {
  const credit = escapeHtml([obs.provider, obs.attribution].filter(Boolean).join(" · "));
  return L.tileLayer(obs.tiles, { maxZoom: 22, tileSize: 256, attribution: credit, className: "sw-image", ...options });
}
