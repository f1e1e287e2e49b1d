// Site page: the timeline of images, a compare picker, the chosen image on a map with its objects,
// the activity chart (baseline band, anomalies, change-points, analyst events), the events form, and
// how the monitor watches the site (its saved sources and watch rules, read-only).
// URL: ?date=DAY (image shown) &before=&after= (compare picker) &zone= (activity area) &series=a,b (counts shown)
import {
  api,
  baseMap,
  bboxBounds,
  boot,
  clearError,
  el,
  fmt,
  imageLayer,
  markSynthetic,
  outlineLayer,
  page,
  readParams,
  showError,
  siteApi,
  sitePage,
  tilesLoaded,
  writeParams,
} from "./common.js";

const name = page.site;
const state = { date: null, before: null, after: null, zone: "", series: [] };
let site = null;
let observations = [];
let activity = null;
let events = [];
let chart = null;
let preview = null;
let imageOnMap = null;
let boxes = null;

const COUNT_COLOURS = ["#e67e22", "#16a085", "#8e44ad", "#c0392b", "#2c3e50", "#7f8c8d"];

function save() {
  writeParams({ date: state.date, before: state.before, after: state.after, zone: state.zone, series: state.series.join(",") });
}

/** Days that have an image, oldest first (several images a day share one). */
function days() {
  return [...new Set(observations.map((o) => o.date))];
}

function usableDays() {
  return [...new Set(observations.filter((o) => o.usable).map((o) => o.date))];
}

/** The image of DAY that a map shows: a usable one if that day has one. */
function imageOn(day) {
  const that = observations.filter((o) => o.date === day);
  return that.find((o) => o.usable) ?? that[0] ?? null;
}

// --- summary and timeline ---------------------------------------------------------------------

function fact(label, value) {
  return el("div", { class: "fact" }, el("span", { text: label }), el("b", { text: value }));
}

function renderSummary() {
  const first = observations[0];
  const last = observations[observations.length - 1];
  const gsds = [...new Set(observations.map((o) => o.gsd_m))].sort((a, b) => a - b);
  document.getElementById("summary").replaceChildren(
    el("h1", { text: site.name }),
    el("div", {}, site.tags.map((t) => el("span", { class: "tag", text: t }))),
    fact("Images", `${observations.length} (${usableDays().length} usable days)`),
    fact("Period", first ? `${first.date} → ${last.date}` : "no images yet"),
    fact("GSD", gsds.length ? gsds.map((g) => fmt.metres(g)).join(", ") : "–"),
    fact("Grid", `EPSG:${site.epsg}`),
    fact("Zones", site.zones.map((z) => z.name).join(", ") || "none"),
    fact("Open alerts", String(site.open_alerts)),
  );
}

function flags(obs) {
  const out = obs.flags.map((f) => el("span", { class: "flag flag-bad", text: f }));
  if (obs.masked_fraction >= 0.05) out.push(el("span", { class: "flag", text: `${fmt.pct(obs.masked_fraction)} masked` }));
  if (!obs.usable) out.push(el("span", { class: "flag flag-bad", title: obs.left_out, text: "left out" }));
  return out.length ? out : [el("span", { class: "flag flag-ok", text: "clear" })];
}

function alignment(obs) {
  const kind = obs.align_status === "failed" ? "flag flag-bad" : obs.align_status === "pending" ? "flag" : "flag flag-ok";
  const word = { reference: "reference", aligned: "aligned", failed: "not aligned", pending: "pending" }[obs.align_status] ?? obs.align_status;
  const detail = obs.align_status === "reference" ? "" : obs.alignment.replace(/^[a-z]+: /, "");
  return [el("span", { class: kind, text: word }), el("div", { class: "muted small", text: detail })];
}

function renderTimeline() {
  const body = document.querySelector("#timeline tbody");
  body.replaceChildren(
    ...observations.map((obs) =>
      el(
        "tr",
        {
          testid: "obs-row",
          "data-date": obs.date,
          "data-obs-id": String(obs.id),
          class: obs.usable ? "" : "unusable",
          title: obs.left_out ?? "",
          on: { click: () => showDate(obs.date) },
        },
        el("td", { class: "mono", text: fmt.datetime(obs.acquired).replace(" UTC", "") }),
        el(
          "td",
          { class: "clip narrow", title: `${obs.provider ?? "unknown provider"} · ${obs.sensor ?? "unknown sensor"}` },
          obs.provider ?? "unknown provider",
          el("div", { class: "muted small", text: obs.sensor ?? "unknown sensor" }),
        ),
        el("td", { class: "num", text: fmt.metres(obs.gsd_m) }),
        el("td", { class: "num", text: fmt.pct(obs.valid_fraction) }),
        el("td", { class: "num", text: fmt.pct(obs.masked_fraction) }),
        el("td", {}, flags(obs)),
        el("td", { class: "clip", title: obs.alignment }, alignment(obs)),
      ),
    ),
  );
  document.getElementById("obs-count").textContent = `${observations.length} images, UTC`;
}

function markSelected() {
  for (const tr of document.querySelectorAll("#timeline tbody tr")) tr.classList.toggle("selected", tr.dataset.date === state.date);
}

// --- compare picker ---------------------------------------------------------------------------

function fillSelect(select, values, chosen) {
  select.replaceChildren(...values.map((v) => el("option", { value: v, text: v, selected: v === chosen })));
}

function renderCompare() {
  const all = days();
  const usable = usableDays();
  state.after = all.includes(state.after) ? state.after : usable[usable.length - 1] ?? all[all.length - 1] ?? null;
  const earlier = usable.filter((d) => d < state.after);
  state.before = all.includes(state.before) && state.before < state.after ? state.before : earlier[earlier.length - 1] ?? all[0] ?? null;
  const before = document.getElementById("compare-before");
  const after = document.getElementById("compare-after");
  fillSelect(before, all, state.before);
  fillSelect(after, all, state.after);
  updateCompareLink();
  before.addEventListener("change", () => {
    state.before = before.value;
    updateCompareLink();
  });
  after.addEventListener("change", () => {
    state.after = after.value;
    updateCompareLink();
  });
}

function updateCompareLink() {
  const link = document.getElementById("compare-go");
  const ok = state.before && state.after && state.before < state.after;
  link.href = ok ? sitePage(name, "compare", { before: state.before, after: state.after }) : "#";
  link.classList.toggle("disabled", !ok);
  link.title = ok ? `changes between ${state.before} and ${state.after}` : "pick a before date earlier than the after date";
  save();
}

// --- the chosen image and its objects ---------------------------------------------------------

async function showDate(day) {
  if (!day) return;
  state.date = day;
  save();
  markSelected();
  const obs = imageOn(day);
  document.getElementById("det-date").value = day;
  document.getElementById("det-date-label").textContent = day;
  if (imageOnMap) preview.removeLayer(imageOnMap);
  imageOnMap = obs ? imageLayer(obs) : null;
  const tiles = imageOnMap ? tilesLoaded(imageOnMap) : null;
  if (imageOnMap) imageOnMap.addTo(preview).bringToBack();
  document.getElementById("preview-caption").textContent = obs
    ? `${fmt.datetime(obs.acquired)} · ${obs.provider ?? "unknown provider"} · ${fmt.metres(obs.gsd_m)}${obs.usable ? "" : ` · left out: ${obs.left_out}`}`
    : "";
  await Promise.all([loadDetections(day), tiles]);
}

async function loadDetections(day) {
  const target = document.getElementById("detections");
  let data;
  try {
    data = await api(siteApi(name, `/detections?date=${encodeURIComponent(day)}`));
  } catch (error) {
    target.replaceChildren(el("p", { class: "empty", text: error.message }));
    return;
  }
  if (boxes) boxes.remove();
  boxes = L.geoJSON(data, { style: { className: "sw-detection", weight: 1.5 } }).addTo(preview);
  boxes.eachLayer((layer) => {
    const p = layer.feature.properties;
    layer.bindTooltip(el("span", { text: `${p.class} · ${fmt.metres(p.length_m)} × ${fmt.metres(p.width_m)} · score ${p.score.toFixed(2)}` }));
  });
  if (!data.counted_by) {
    target.replaceChildren(el("p", { class: "empty", text: "No object detector has counted this site (run sitewatch analyze)." }));
    return;
  }
  if (!data.counts.length) {
    target.replaceChildren(el("p", { class: "empty", text: `Not counted on ${data.date}: ${data.not_counted ?? "no pass"}` }));
    return;
  }
  const classes = [...new Set(data.counts.flatMap((c) => Object.keys(c.counts)))];
  target.replaceChildren(
    el("p", { class: "muted small", text: `Counted by ${data.counted_by}; an object is in a zone when its box centre is.` }),
    el(
      "table",
      { class: "grid counts" },
      el("thead", {}, el("tr", {}, el("th", { text: "Area" }), classes.map((c) => el("th", { class: "num", text: c })), el("th", { class: "num", text: "Seen" }))),
      el(
        "tbody",
        {},
        data.counts.map((row) =>
          el(
            "tr",
            { testid: "zone-counts", "data-zone": row.zone ?? "" },
            el("td", { text: row.zone ?? "whole site" }),
            classes.map((c) => el("td", { class: row.counts[c] ? "num" : "num zero", text: String(row.counts[c] ?? 0) })),
            el("td", { class: "num", text: fmt.pct(row.clear) }),
          ),
        ),
      ),
    ),
  );
}

// --- activity chart ---------------------------------------------------------------------------

const seconds = (day) => Date.parse(`${day}T00:00:00Z`) / 1000;

function area() {
  return activity.areas.find((a) => (a.zone ?? "") === state.zone) ?? activity.areas[0];
}

function renderAreaSelect() {
  const select = document.getElementById("activity-zone");
  select.replaceChildren(...activity.areas.map((a) => el("option", { value: a.zone ?? "", text: a.zone ?? "whole site", selected: (a.zone ?? "") === state.zone })));
  select.addEventListener("change", () => {
    state.zone = select.value;
    save();
    renderToggles();
    drawChart();
  });
}

function renderToggles() {
  const columns = Object.keys(area().counts);
  state.series = state.series.filter((s) => columns.includes(s));
  const box = document.getElementById("series-toggles");
  box.replaceChildren(
    ...(columns.length
      ? columns.map((column) => {
          const input = el("input", { type: "checkbox", value: column, checked: state.series.includes(column), testid: "series-toggle" });
          input.addEventListener("change", () => {
            state.series = [...box.querySelectorAll("input:checked")].map((i) => i.value);
            save();
            drawChart();
          });
          return el("label", { class: "check" }, input, `${column} count`);
        })
      : [el("span", { class: "muted small", text: area().counted_by ? "" : "No object counts (run sitewatch analyze with an object detector)." })]),
  );
}

/** Values of SERIES (dates, values) on the union X axis, null where it has none. */
function onAxis(xs, dates, values) {
  const at = new Map(dates.map((d, i) => [seconds(d), values[i]]));
  return xs.map((x) => (at.has(x) ? at.get(x) : null));
}

function drawChart() {
  const target = document.getElementById("activity-chart");
  if (chart) chart.destroy();
  chart = null;
  const a = area();
  const index = a.index;
  const shown = state.series.map((s) => [s, a.counts[s]]);
  const xs = [...new Set([...index.dates, ...shown.flatMap(([, c]) => c.dates)].map(seconds))].sort((p, q) => p - q);
  if (!xs.length) {
    target.replaceChildren(el("p", { class: "empty", text: index.note ?? "No usable dates yet." }));
    renderFindings(a);
    return;
  }
  target.replaceChildren();
  const anomalyValues = onAxis(xs, index.anomalies.map((p) => p.date), index.anomalies.map((p) => p.value));
  const data = [
    xs,
    onAxis(xs, index.dates, index.values),
    onAxis(xs, index.dates, index.low),
    onAxis(xs, index.dates, index.high),
    onAxis(xs, index.dates, index.median),
    anomalyValues,
    ...shown.map(([, c]) => onAxis(xs, c.dates, c.values)),
  ];
  const pct = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(2)} %`);
  const series = [
    { label: "date", value: (u, v) => (v === null ? "–" : new Date(v * 1000).toISOString().slice(0, 10)) },
    { label: "activity index", stroke: "#2364aa", width: 2, spanGaps: true, value: (u, v) => pct(v), points: { size: 5 } },
    { label: "band low", stroke: "rgba(35,100,170,0.25)", width: 1, spanGaps: true, value: (u, v) => pct(v), points: { show: false } },
    { label: "band high", stroke: "rgba(35,100,170,0.25)", width: 1, spanGaps: true, value: (u, v) => pct(v), points: { show: false } },
    { label: "baseline", stroke: "#5d6d7e", width: 1, dash: [4, 4], spanGaps: true, value: (u, v) => pct(v), points: { show: false } },
    { label: "anomaly", stroke: "#c0392b", width: 0, paths: () => null, value: (u, v) => pct(v), points: { show: true, size: 11, fill: "#c0392b", stroke: "#fff", width: 1.5 } },
    ...shown.map(([column], i) => ({
      label: column,
      scale: "n",
      stroke: COUNT_COLOURS[i % COUNT_COLOURS.length],
      width: 1.5,
      spanGaps: true,
      value: (u, v) => (v === null ? "n/a" : String(Math.round(v))),
    })),
  ];
  const eventTimes = events.map((e) => seconds(e.date));
  const lo = Math.min(xs[0], ...eventTimes);
  const hi = Math.max(xs[xs.length - 1], ...eventTimes);
  const pad = Math.max((hi - lo) * 0.03, 86400);
  const axes = [
    { stroke: "#4a5563", grid: { stroke: "#eceff3" }, ticks: { stroke: "#d9dee4" } },
    {
      stroke: "#4a5563",
      grid: { stroke: "#eceff3" },
      ticks: { stroke: "#d9dee4" },
      size: 62,
      values: (u, vals) => vals.map((v) => `${(v * 100).toFixed(1)} %`),
      label: "departing pixels",
      labelSize: 16,
    },
  ];
  if (shown.length) axes.push({ scale: "n", side: 1, stroke: "#4a5563", grid: { show: false }, size: 40, label: "objects", labelSize: 16 });
  chart = new uPlot(
    {
      width: Math.max(target.clientWidth, 300),
      height: 260,
      series,
      axes,
      scales: {
        x: { time: true, range: () => [lo - pad, hi + pad] },
        y: { range: (u, min, max) => [0, Math.max(max ?? 0, 0.01) * 1.12] },
        n: { range: (u, min, max) => [0, Math.max(max ?? 0, 4) * 1.15] },
      },
      bands: [{ series: [3, 2], fill: "rgba(35,100,170,0.12)" }],
      cursor: { points: { size: 7 } },
      hooks: { draw: [(u) => drawMarks(u, index.change_points)] },
    },
    data,
    target,
  );
  // The band's edges are series only so that uPlot can fill between them: not legend entries.
  const rows = chart.root.querySelectorAll(".u-legend .u-series");
  rows[2].hidden = true;
  rows[3].hidden = true;
  renderFindings(a);
}

/** Change-points as vertical lines between their two dates; analyst events as labelled markers. */
function drawMarks(u, changePoints) {
  const { ctx } = u;
  const top = u.bbox.top;
  const bottom = u.bbox.top + u.bbox.height;
  const ratio = window.devicePixelRatio || 1;
  ctx.save();
  ctx.font = `${11 * ratio}px system-ui, sans-serif`;
  for (const cp of changePoints) {
    const x = u.valToPos((seconds(cp.last_before) + seconds(cp.first_after)) / 2, "x", true);
    ctx.strokeStyle = "#7b3fb0";
    ctx.lineWidth = 2 * ratio;
    ctx.setLineDash([6 * ratio, 3 * ratio]);
    ctx.beginPath();
    ctx.moveTo(x, top);
    ctx.lineTo(x, bottom);
    ctx.stroke();
    ctx.fillStyle = "#7b3fb0";
    ctx.fillText(cp.direction === "rose" ? "▲ rose" : "▼ fell", x + 4 * ratio, top + 12 * ratio);
  }
  ctx.setLineDash([]);
  for (const event of events) {
    const x = u.valToPos(seconds(event.date), "x", true);
    ctx.strokeStyle = "#1e7b4f";
    ctx.lineWidth = 1.5 * ratio;
    ctx.beginPath();
    ctx.moveTo(x, top);
    ctx.lineTo(x, bottom);
    ctx.stroke();
    ctx.fillStyle = "#1e7b4f";
    ctx.beginPath();
    ctx.moveTo(x, bottom);
    ctx.lineTo(x - 5 * ratio, bottom + 7 * ratio);
    ctx.lineTo(x + 5 * ratio, bottom + 7 * ratio);
    ctx.fill();
    ctx.fillText(event.label, x + 4 * ratio, bottom - 6 * ratio);
  }
  ctx.restore();
}

function renderFindings(a) {
  const items = [];
  for (const cp of a.index.change_points) items.push(el("li", { text: `Change-point: ${cp.text}` }));
  const z = (p) => `robust z ${p.z >= 0 ? "+" : ""}${p.z.toFixed(1)}`;
  for (const p of a.index.anomalies) {
    items.push(el("li", { text: `${p.date}: ${p.anomaly} anomaly, ${(p.value * 100).toFixed(2)} % of clear pixels departing (${z(p)})` }));
  }
  for (const [column, c] of Object.entries(a.counts)) {
    for (const p of c.anomalies) items.push(el("li", { text: `${p.date}: ${column} count ${Math.round(p.value)}, ${p.anomaly} anomaly (${z(p)})` }));
  }
  if (a.index.note) items.push(el("li", { text: a.index.note }));
  if (a.skipped.length) items.push(el("li", { class: "muted", text: `No index on ${a.skipped.map((s) => `${s.date} (${s.reason})`).join("; ")}` }));
  items.push(el("li", { class: "muted", text: `Baseline: median of up to ${a.index.window} earlier dates; the band is where |robust z| < ${a.index.threshold}. ${activity.persistent_note}.` }));
  document.getElementById("findings").replaceChildren(...items);
  document.getElementById("chart-legend").replaceChildren(
    el("span", {}, el("i", { class: "key key-index" }), "activity index"),
    el("span", {}, el("i", { class: "key key-band" }), "normal range (baseline band)"),
    el("span", {}, el("i", { class: "key key-anomaly" }), "anomaly"),
    el("span", {}, el("i", { class: "key key-cp" }), "change-point"),
    el("span", {}, el("i", { class: "key key-event" }), "analyst event"),
  );
}

// --- analyst events ----------------------------------------------------------------------------

function renderEvents() {
  const list = document.getElementById("events");
  const sorted = [...events].sort((a, b) => (a.date < b.date ? -1 : 1));
  list.replaceChildren(
    ...sorted.map((event) =>
      el(
        "li",
        { testid: "event-item", "data-event-id": String(event.id) },
        el("span", { class: "mono", text: event.date }),
        el("span", { class: "grow", text: event.label }, event.note ? el("span", { class: "muted small", text: ` — ${event.note}` }) : null),
        el("button", { type: "button", class: "small danger", title: "remove this event", text: "Remove", on: { click: () => removeEvent(event) } }),
      ),
    ),
  );
  if (!events.length) list.append(el("li", { class: "muted small", text: "No events yet: add the dates that matter (a summit, a sanctions announcement) to read the chart against them." }));
}

async function loadEvents() {
  events = await api(siteApi(name, "/events"));
  renderEvents();
}

async function addEvent(submit) {
  submit.preventDefault();
  const date = document.getElementById("event-date");
  const label = document.getElementById("event-label");
  try {
    await api(siteApi(name, "/events"), { method: "POST", body: { date: date.value, label: label.value } });
    clearError();
    label.value = "";
    await loadEvents();
    if (activity) drawChart();
  } catch (error) {
    showError(error);
  }
}

async function removeEvent(event) {
  try {
    await api(`/api/events/${event.id}`, { method: "DELETE" });
    await loadEvents();
    if (activity) drawChart();
  } catch (error) {
    showError(error);
  }
}

// --- watching ----------------------------------------------------------------------------------

function renderWatching(watching) {
  const sources = document.getElementById("watch-sources");
  sources.replaceChildren(
    ...watching.sources.map((source) =>
      el(
        "li",
        { testid: "source-item", "data-source-id": String(source.id) },
        el("span", { class: "mono", text: source.kind }),
        el("span", { class: "target mono", text: source.target }),
        source.collections.length ? el("span", { class: "muted small", text: source.collections.join(", ") }) : null,
      ),
    ),
  );
  if (!watching.sources.length) sources.append(el("li", { class: "muted small", text: "No saved sources: the monitor polls only the folders and STAC API it is given." }));
  const rules = document.getElementById("watch-rules");
  rules.replaceChildren(
    ...watching.rules.map((rule) =>
      el("li", { testid: "rule-item" }, el("b", { text: rule.name }), el("span", { class: "grow muted small", text: rule.description })),
    ),
  );
  if (!watching.rules.length) rules.append(el("li", { class: "muted small", text: "No watch rules: nothing raises an alert for this site." }));
}

// --- start -----------------------------------------------------------------------------------

async function start() {
  Object.assign(state, readParams());
  state.zone = state.zone ?? "";
  state.series = state.series ? String(state.series).split(",").filter(Boolean) : [];
  const data = await api(siteApi(name));
  site = data.site;
  observations = data.observations;
  markSynthetic(site.synthetic);
  renderSummary();
  renderTimeline();
  renderCompare();
  renderWatching(data.watching);
  preview = baseMap("preview-map");
  outlineLayer(site).addTo(preview);
  preview.fitBounds(bboxBounds(site.bbox), { padding: [10, 10] });
  const all = days();
  const picker = document.getElementById("det-date");
  fillSelect(picker, all, state.date);
  picker.addEventListener("change", () => showDate(picker.value));
  document.getElementById("event-form").addEventListener("submit", addEvent);
  document.getElementById("event-date").value = all[all.length - 1] ?? "";
  const shown = all.includes(state.date) ? state.date : all[all.length - 1];
  const chartReady = Promise.all([
    loadEvents(),
    api(siteApi(name, "/activity")).then((result) => {
      activity = result;
    }),
  ]).then(() => {
    renderAreaSelect();
    renderToggles();
    drawChart();
    const box = document.getElementById("activity-chart");
    new ResizeObserver(() => chart && chart.setSize({ width: Math.max(box.clientWidth, 300), height: 260 })).observe(box);
  });
  await Promise.all([showDate(shown), chartReady]);
  save();
}

boot(start);
