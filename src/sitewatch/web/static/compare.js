// Compare: two images of a site side by side (maps synced both ways) or in one map with a swipe,
// the changes that happened between them (coloured by kind, with review buttons), zone outlines and
// filter, and annotations drawn on the "after" image.
// URL: ?before=DAY&after=DAY[&zone=Z][&mode=side|swipe][&transient=hide][&change=ID][&swipe=0-100][&c=lat,lng,zoom]
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
  tilesLoaded,
  writeParams,
} from "./common.js";

const name = page.site;
const KINDS = ["appeared", "removed", "modified"];
const state = { before: null, after: null, zone: "", mode: "side", transient: "", change: null, swipe: "50", c: null };
let site = null;
let observations = [];
let features = [];
let annotations = [];
const maps = {}; // side: before, after; swipe: swipe
const layers = {}; // per map key: { image(s), changes, outline, annotations }
let syncing = false;
let drawing = null; // the leaflet-draw handler in use
let pending = null; // a drawn, unsaved annotation: { geometry, layer }
let openPopup = null; // { layer, feature } of the change whose popup is open

function save() {
  const view = activeMap();
  if (view) {
    const centre = view.getCenter();
    state.c = `${centre.lat.toFixed(6)},${centre.lng.toFixed(6)},${view.getZoom().toFixed(2)}`;
  }
  writeParams({ ...state, swipe: state.mode === "swipe" ? state.swipe : null });
}

function days() {
  return [...new Set(observations.map((o) => o.date))];
}

/** The image of DAY a map shows: a usable one if that day has one. */
function imageOn(day) {
  const that = observations.filter((o) => o.date === day);
  return that.find((o) => o.usable) ?? that[0] ?? null;
}

function activeMap() {
  return state.mode === "swipe" ? maps.swipe : maps.after;
}

// --- maps ----------------------------------------------------------------------------------------

function makeMap(key, id) {
  const map = baseMap(id);
  map.createPane("before").style.zIndex = 210;
  map.createPane("after").style.zIndex = 220;
  layers[key] = { images: [], changes: null, outline: outlineLayer(site).addTo(map), annotations: L.featureGroup().addTo(map) };
  map.on("moveend", save);
  map.on(L.Draw.Event.CREATED, (event) => startAnnotation(event.layer, map));
  map.on(L.Draw.Event.DRAWSTOP, () => {
    drawing = null;
    markDrawing();
  });
  maps[key] = map;
  return map;
}

function sync(a, b) {
  const follow = (from, to) => () => {
    if (syncing) return;
    syncing = true;
    to.setView(from.getCenter(), from.getZoom(), { animate: false });
    syncing = false;
  };
  a.on("move", follow(a, b));
  b.on("move", follow(b, a));
}

function ensureMaps() {
  if (state.mode === "side" && !maps.before) {
    makeMap("before", "map-before");
    makeMap("after", "map-after");
    sync(maps.before, maps.after);
  }
  if (state.mode === "swipe" && !maps.swipe) {
    const map = makeMap("swipe", "map-swipe");
    map.on("move", clipSwipe);
    map.on("resize", clipSwipe);
  }
}

/** Clip the swipe map's "after" pane to the right of the handle (layer-point coordinates move with panning). */
function clipSwipe() {
  const map = maps.swipe;
  if (!map || state.mode !== "swipe") return;
  const ratio = Number(state.swipe) / 100;
  const nw = map.containerPointToLayerPoint([0, 0]);
  const se = map.containerPointToLayerPoint(map.getSize());
  const x = nw.x + (se.x - nw.x) * ratio;
  map.getPane("after").style.clip = `rect(${nw.y}px, ${se.x}px, ${se.y}px, ${x}px)`;
  document.getElementById("swipe-divider").style.left = `${ratio * 100}%`;
}

function showMode() {
  const side = state.mode === "side";
  for (const frame of document.querySelectorAll(".map-frame.side")) frame.hidden = !side;
  document.querySelector(".map-frame.swipe").hidden = side;
  for (const button of document.querySelectorAll("[data-mode]")) button.setAttribute("aria-pressed", String(button.dataset.mode === state.mode));
  const previous = side ? maps.swipe : maps.after; // the map in view until now
  ensureMaps();
  const map = activeMap();
  if (previous && previous !== map) {
    // The map coming into view takes the view of the one leaving, before anything asks it where it is.
    map.invalidateSize();
    map.setView(previous.getCenter(), previous.getZoom(), { animate: false });
  }
  for (const m of Object.values(maps)) m.invalidateSize(); // maps shown again had no size while hidden
  clipSwipe();
}

function label(node, role, obs) {
  node.replaceChildren(el("b", { text: role }), ` ${obs ? fmt.datetime(obs.acquired) : "no image"}`, obs ? ` · ${fmt.metres(obs.gsd_m)}` : "");
  node.title = obs ? `${obs.provider ?? "unknown provider"}${obs.usable ? "" : ` · left out: ${obs.left_out}`}` : "";
}

/** Put the two images on the maps; resolves when their tiles in view have loaded. */
function showImages() {
  const before = imageOn(state.before);
  const after = imageOn(state.after);
  const loading = [];
  const place = (key, pairs) => {
    const map = maps[key];
    if (!map) return;
    for (const layer of layers[key].images) map.removeLayer(layer);
    layers[key].images = pairs
      .filter(([obs]) => obs)
      .map(([obs, pane]) => {
        const layer = imageLayer(obs, { pane });
        loading.push(tilesLoaded(layer));
        return layer.addTo(map);
      });
  };
  place("before", [[before, "before"]]);
  place("after", [[after, "after"]]);
  place("swipe", [
    [before, "before"],
    [after, "after"],
  ]);
  label(document.getElementById("label-before"), "BEFORE", before);
  label(document.getElementById("label-after"), "AFTER", after);
  label(document.getElementById("label-swipe-before"), "BEFORE", before);
  label(document.getElementById("label-swipe-after"), "AFTER", after);
  clipSwipe();
  return Promise.all(loading);
}

// --- changes -------------------------------------------------------------------------------------

function visibleFeatures() {
  return features.filter((f) => state.transient !== "hide" || f.properties.persistence !== "transient");
}

function changeClass(p) {
  return `sw-change sw-change-${KINDS.includes(p.kind) ? p.kind : "other"}${p.persistence === "transient" ? " sw-change-transient" : ""}`;
}

function reviewState(review) {
  if (!review) return null;
  return el("span", { class: `review-state ${review.verdict}`, testid: "review-state", title: review.reason || "", text: review.verdict });
}

function popupContent(feature) {
  const p = feature.properties;
  const reason = el("input", { type: "text", testid: "review-reason", placeholder: "reason (needed to reject)", maxlength: "1000" });
  const message = el("p", { class: "muted small", hidden: true });
  const verdict = (value) => () => saveReview(feature, value, reason.value, message);
  const rows = [
    ["Area", fmt.area(p.area_m2)],
    ["Between", `${fmt.day(p.date_from)} → ${fmt.day(p.date_to)}`],
    ["Confidence", p.confidence.toFixed(2)],
    ["Persistence", p.persistence ? `${p.persistence}${p.persistence_reason ? ` (${p.persistence_reason})` : ""}` : "not followed"],
    ["Detector", p.detector],
  ];
  if (p.unseen_dates.length) rows.push(["Unseen", p.unseen_dates.map(fmt.day).join(", ")]);
  if (p.ended) rows.push(["Ended", fmt.day(p.ended)]);
  if (p.review) rows.push(["Review", `${p.review.verdict}${p.review.reason ? `: ${p.review.reason}` : ""} (${fmt.day(p.review.created)})`]);
  return el(
    "div",
    { class: "popup", "data-change-id": String(p.id) },
    el("h3", { text: `${p.kind} #${p.id}` }),
    el("dl", {}, rows.map(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])),
    el(
      "div",
      { class: "review" },
      reviewState(p.review),
      reason,
      el("button", { type: "button", class: "small", testid: "confirm-change", text: "Confirm", on: { click: verdict("confirmed") } }),
      el("button", { type: "button", class: "small danger", testid: "reject-change", text: "Reject", on: { click: verdict("rejected") } }),
    ),
    message,
  );
}

async function saveReview(feature, verdict, reason, message) {
  try {
    feature.properties.review = await api(siteApi(name, `/changes/${feature.properties.id}/review`), { method: "POST", body: { verdict, reason } });
    clearError();
    renderChangeList();
    if (openPopup && openPopup.feature === feature) openPopup.layer.setPopupContent(popupContent(feature));
  } catch (error) {
    message.textContent = error.message;
    message.hidden = false;
  }
}

function drawChanges() {
  for (const key of Object.keys(maps)) {
    const map = maps[key];
    if (layers[key].changes) map.removeLayer(layers[key].changes);
    layers[key].changes = L.geoJSON(
      { type: "FeatureCollection", features: visibleFeatures() },
      {
        style: (feature) => ({ className: changeClass(feature.properties), color: page.kind_colours[feature.properties.kind] ?? "#f0f", weight: 2 }),
        onEachFeature: (feature, layer) => {
          layer.bindPopup(() => popupContent(feature), { maxWidth: 320, autoPan: true });
          layer.on("popupopen", () => {
            openPopup = { layer, feature };
            select(feature.properties.id, false);
          });
        },
      },
    ).addTo(map);
  }
}

function renderChangeList() {
  const shown = visibleFeatures();
  const list = document.getElementById("changes");
  list.replaceChildren(
    ...shown.map((f) => {
      const p = f.properties;
      return el(
        "li",
        { testid: "change-item", "data-change-id": String(p.id), "data-kind": p.kind, class: String(p.id) === String(state.change) ? "selected" : "", on: { click: () => select(p.id, true) } },
        el("span", { class: `kind kind-${p.kind}` }),
        el(
          "span",
          { class: "grow" },
          el("b", { text: `${p.kind} ` }),
          el("span", { class: "mono", text: fmt.area(p.area_m2) }),
          el("div", { class: "muted small", text: `${fmt.day(p.date_from)} → ${fmt.day(p.date_to)} · conf ${p.confidence.toFixed(2)} · ${p.persistence ?? "not followed"}` }),
        ),
        reviewState(p.review),
      );
    }),
  );
  if (!shown.length) list.append(el("li", { class: "muted small", text: "No changes between these images." }));
  const counts = KINDS.map((k) => `${shown.filter((f) => f.properties.kind === k).length} ${k}`).join(", ");
  document.getElementById("change-count").textContent = `${shown.length} (${counts})`;
}

/** Select change ID: mark it in the list and on the maps; with FOCUS, zoom to it and open its popup. */
function select(id, focus) {
  state.change = id === null ? null : String(id);
  for (const li of document.querySelectorAll("#changes li[data-change-id]")) li.classList.toggle("selected", li.dataset.changeId === state.change);
  for (const key of Object.keys(maps)) {
    layers[key].changes?.eachLayer((layer) => layer.getElement()?.classList.toggle("selected", String(layer.feature.properties.id) === state.change));
  }
  if (focus) {
    const map = activeMap();
    const key = state.mode === "swipe" ? "swipe" : "after";
    let target = null;
    layers[key].changes?.eachLayer((layer) => {
      if (String(layer.feature.properties.id) === state.change) target = layer;
    });
    if (target) {
      map.fitBounds(target.getBounds(), { padding: [80, 80], maxZoom: 20 });
      target.openPopup();
    }
  }
  save();
}

async function loadChanges() {
  const query = new URLSearchParams({ before: state.before, after: state.after });
  if (state.zone) query.set("zone", state.zone);
  const data = await api(siteApi(name, `/changes?${query}`));
  features = data.features;
  document.getElementById("interval").textContent =
    `Changes that happened between ${state.before} and ${state.after}: last image without them on or after ` +
    `${state.before}, first image with them on or before ${state.after}` +
    `${state.zone ? `, touching zone "${state.zone}"` : ""}.`;
  drawChanges();
  renderChangeList();
}

// --- annotations ----------------------------------------------------------------------------------

function markDrawing() {
  document.getElementById("annotate-point").classList.toggle("primary", drawing?.type === "marker");
  document.getElementById("annotate-polygon").classList.toggle("primary", drawing?.type === "polygon");
  document.getElementById("annotate-finish").hidden = drawing?.type !== "polygon";
}

function startDrawing(kind) {
  if (drawing) drawing.disable();
  const map = activeMap();
  map.closePopup(); // a popup over the place to mark would take the click
  drawing =
    kind === "marker"
      ? new L.Draw.Marker(map, { icon: new L.Icon.Default(), repeatMode: false })
      : new L.Draw.Polygon(map, { allowIntersection: false, showArea: false, shapeOptions: { className: "sw-annotation", color: "#e0f", weight: 2 } });
  drawing.enable();
  markDrawing();
}

function startAnnotation(layer, map) {
  if (pending) pending.layer.remove();
  pending = { geometry: layer.toGeoJSON().geometry, layer: layer.addTo(map) };
  const after = imageOn(state.after);
  document.getElementById("annotation-where").textContent = `On the after image, ${after ? fmt.datetime(after.acquired) : state.after}.`;
  document.getElementById("annotation-form").hidden = false;
  document.getElementById("annotation-label").focus();
}

function cancelAnnotation() {
  if (pending) pending.layer.remove();
  pending = null;
  document.getElementById("annotation-form").hidden = true;
}

async function saveAnnotation(submit) {
  submit.preventDefault();
  if (!pending) return;
  const labelInput = document.getElementById("annotation-label");
  const noteInput = document.getElementById("annotation-note");
  const after = imageOn(state.after);
  try {
    await api(siteApi(name, "/annotations"), {
      method: "POST",
      body: { geometry: pending.geometry, label: labelInput.value, note: noteInput.value, scene_id: after ? after.scene_id : null },
    });
    clearError();
    labelInput.value = "";
    noteInput.value = "";
    cancelAnnotation();
    await loadAnnotations();
  } catch (error) {
    showError(error);
  }
}

function annotationLayer(feature) {
  const p = feature.properties;
  const text = el(
    "div",
    {},
    el("b", { text: p.label }),
    p.note ? el("div", { text: p.note }) : null,
    el("div", { class: "muted small", text: p.image_date ? `on the image of ${fmt.day(p.image_date)}` : "on the site" }),
  );
  // Marks made on another image than the "after" one are drawn dashed: they may not hold on this one.
  const after = imageOn(state.after);
  const className = p.scene_id === null || p.scene_id === after?.scene_id ? "sw-annotation" : "sw-annotation sw-annotation-other";
  return L.geoJSON(feature, {
    style: { className, color: "#e0f", weight: 2 },
    pointToLayer: (f, latlng) => L.circleMarker(latlng, { radius: 7, className, color: "#e0f", weight: 2 }),
  }).bindPopup(() => text);
}

function drawAnnotations() {
  for (const key of Object.keys(maps)) {
    if (key === "before") continue;
    layers[key].annotations.clearLayers();
    for (const feature of annotations) layers[key].annotations.addLayer(annotationLayer(feature));
  }
}

async function loadAnnotations() {
  annotations = (await api(siteApi(name, "/annotations"))).features;
  drawAnnotations();
  const list = document.getElementById("annotations");
  list.replaceChildren(
    ...annotations.map((feature) => {
      const p = feature.properties;
      return el(
        "li",
        { testid: "annotation-item", "data-annotation-id": String(p.id) },
        el(
          "span",
          { class: "grow" },
          el("b", { text: p.label }),
          p.note ? el("div", { class: "small", text: p.note }) : null,
          el("div", { class: "muted small", text: `${feature.geometry.type.toLowerCase()} · ${p.image_date ? `image of ${fmt.day(p.image_date)}` : "site"}` }),
        ),
        el("button", { type: "button", class: "small", text: "Show", on: { click: () => showAnnotation(feature) } }),
        el("button", { type: "button", class: "small danger", text: "Delete", on: { click: () => deleteAnnotation(p.id) } }),
      );
    }),
  );
  if (!annotations.length) list.append(el("li", { class: "muted small", text: "No annotations yet: draw a point or a polygon on the after image." }));
}

function showAnnotation(feature) {
  const bounds = L.geoJSON(feature).getBounds();
  activeMap().fitBounds(bounds, { padding: [80, 80], maxZoom: 20 });
}

async function deleteAnnotation(id) {
  try {
    await api(`/api/annotations/${id}`, { method: "DELETE" });
    await loadAnnotations();
  } catch (error) {
    showError(error);
  }
}

async function importAnnotations(change) {
  const file = change.target.files[0];
  change.target.value = "";
  if (!file) return;
  try {
    const result = await api(siteApi(name, "/annotations/import"), { method: "POST", raw: file, type: "application/geo+json" });
    clearError();
    await loadAnnotations();
    showError(`Imported ${result.imported} annotation${result.imported === 1 ? "" : "s"} from ${file.name}.`);
    document.getElementById("error-banner").classList.remove("banner-error");
  } catch (error) {
    document.getElementById("error-banner").classList.add("banner-error");
    showError(error);
  }
}

// --- start -----------------------------------------------------------------------------------------

function fillDays() {
  const all = days();
  const usable = [...new Set(observations.filter((o) => o.usable).map((o) => o.date))];
  if (!all.includes(state.after)) state.after = usable[usable.length - 1] ?? all[all.length - 1] ?? null;
  if (!all.includes(state.before) || state.before >= state.after) {
    const earlier = usable.filter((d) => d < state.after);
    state.before = earlier[earlier.length - 1] ?? all[0] ?? null;
  }
  for (const [id, chosen] of [
    ["before", state.before],
    ["after", state.after],
  ]) {
    document.getElementById(id).replaceChildren(...all.map((d) => el("option", { value: d, text: d, selected: d === chosen })));
  }
}

async function changeDays() {
  const before = document.getElementById("before").value;
  const after = document.getElementById("after").value;
  if (before >= after) {
    showError(`Pick a before date earlier than the after date (${before} is not before ${after}).`);
    return;
  }
  clearError();
  Object.assign(state, { before, after, change: null });
  showImages();
  drawAnnotations();
  await loadChanges();
  save();
}

function wire() {
  document.getElementById("before").addEventListener("change", changeDays);
  document.getElementById("after").addEventListener("change", changeDays);
  const zone = document.getElementById("zone");
  zone.append(...site.zones.map((z) => el("option", { value: z.name, text: z.name, selected: z.name === state.zone })));
  zone.addEventListener("change", async () => {
    state.zone = zone.value;
    const target = site.zones.find((z) => z.name === state.zone);
    activeMap().fitBounds(target ? L.geoJSON(target.geometry).getBounds() : bboxBounds(site.bbox), { padding: [20, 20] });
    await loadChanges();
    save();
  });
  for (const button of document.querySelectorAll("[data-mode]")) {
    button.addEventListener("click", () => {
      state.mode = button.dataset.mode;
      showMode();
      showImages();
      drawChanges();
      drawAnnotations();
      save();
    });
  }
  const hide = document.getElementById("hide-transient");
  hide.checked = state.transient === "hide";
  hide.addEventListener("change", () => {
    state.transient = hide.checked ? "hide" : "";
    drawChanges();
    renderChangeList();
    save();
  });
  const range = document.getElementById("swipe-range");
  range.value = state.swipe;
  range.addEventListener("input", () => {
    state.swipe = range.value;
    clipSwipe();
  });
  range.addEventListener("change", save);
  document.getElementById("annotate-point").addEventListener("click", () => startDrawing("marker"));
  document.getElementById("annotate-polygon").addEventListener("click", () => startDrawing("polygon"));
  document.getElementById("annotate-finish").addEventListener("click", () => drawing?.completeShape());
  document.getElementById("annotation-form").addEventListener("submit", saveAnnotation);
  document.getElementById("annotation-cancel").addEventListener("click", cancelAnnotation);
  document.getElementById("annotations-export").href = siteApi(name, "/annotations.geojson");
  document.getElementById("annotations-import").addEventListener("change", importAnnotations);
  document.getElementById("legend").replaceChildren(...KINDS.map((k) => el("span", {}, el("i", { class: k }), k)), el("span", { class: "muted", text: "dashed: transient" }));
}

async function start() {
  Object.assign(state, readParams());
  if (!["side", "swipe"].includes(state.mode)) state.mode = "side";
  const data = await api(siteApi(name));
  site = data.site;
  observations = data.observations;
  markSynthetic(site.synthetic);
  fillDays();
  wire();
  showMode();
  const [lat, lng, zoom] = String(state.c ?? "").split(",").map(Number);
  if (Number.isFinite(lat) && Number.isFinite(lng) && Number.isFinite(zoom)) activeMap().setView([lat, lng], zoom, { animate: false });
  else activeMap().fitBounds(bboxBounds(site.bbox), { padding: [10, 10] });
  const images = showImages();
  if (!state.before || !state.after) throw new Error("This site needs two images to compare.");
  await Promise.all([loadChanges(), loadAnnotations(), images]);
  if (state.change && features.some((f) => String(f.properties.id) === String(state.change))) select(state.change, !state.c);
  save();
}

boot(start);
