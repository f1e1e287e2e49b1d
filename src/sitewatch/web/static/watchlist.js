// Watchlist: every site on a map and in a table (latest image, open alerts, activity sparkline).
import { api, baseMap, boot, el, fmt, markSynthetic, siteApi, svg } from "./common.js";

const SPARK_W = 120;
const SPARK_H = 26;

/** Draw an activity sparkline into the SVG: the index by date, anomalies as dots. */
function drawSparkline(node, spark) {
  node.replaceChildren();
  if (!spark || spark.values.length === 0) {
    node.append(svg("text", { x: 2, y: SPARK_H - 8, class: "spark-none" }));
    node.lastChild.textContent = spark ? "no usable dates" : "…";
    return;
  }
  const times = spark.dates.map((d) => Date.parse(d));
  const t0 = Math.min(...times);
  const t1 = Math.max(...times);
  const top = Math.max(...spark.values) || 1;
  const x = (t) => (t1 === t0 ? SPARK_W / 2 : 2 + ((t - t0) / (t1 - t0)) * (SPARK_W - 4));
  const y = (v) => SPARK_H - 3 - (v / top) * (SPARK_H - 6);
  const points = spark.values.map((v, i) => `${x(times[i]).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  node.append(svg("polyline", { points, class: "spark-line" }));
  spark.values.forEach((v, i) => {
    if (spark.anomalies[i]) node.append(svg("circle", { cx: x(times[i]), cy: y(v), r: 2.5, class: `spark-anomaly spark-${spark.anomalies[i]}` }));
  });
  const last = spark.values.length - 1;
  node.nextSibling?.remove();
  node.after(el("span", { class: `spark-value${spark.anomalies[last] ? " spark-value-anomaly" : ""}`, text: fmt.pct(spark.values[last]) }));
  const title = svg("title");
  title.textContent = `activity index, ${spark.dates[0]} to ${spark.dates[last]}: latest ${fmt.pct(spark.values[last])} of clear pixels departing`;
  node.append(title);
}

function row(site) {
  const spark = svg("svg", { width: SPARK_W, height: SPARK_H, viewBox: `0 0 ${SPARK_W} ${SPARK_H}`, class: "sparkline" });
  spark.dataset.testid = "sparkline";
  drawSparkline(spark, site.sparkline);
  const alerts = el("span", { class: site.open_alerts ? "badge badge-alert" : "badge", testid: "open-alerts", text: String(site.open_alerts) });
  return {
    spark,
    tr: el(
      "tr",
      { testid: "site-row", "data-site": site.name },
      el("td", {}, el("a", { href: site.url, class: "site-link", text: site.name })),
      el("td", {}, site.tags.map((tag) => el("span", { class: "tag", text: tag }))),
      el("td", { class: "num", text: String(site.observations) }),
      el("td", { class: "mono", text: site.latest ?? "no images yet" }),
      el("td", { class: "num" }, el("a", { href: "/alerts", class: "plain" }, alerts)),
      el("td", { class: "spark-cell" }, spark),
    ),
  };
}

async function start() {
  const sites = await api("/api/sites");
  const map = baseMap("map");
  const outlines = L.featureGroup().addTo(map);
  const body = document.querySelector("#sites tbody");
  document.getElementById("site-count").textContent = `${sites.length} site${sites.length === 1 ? "" : "s"}`;
  document.getElementById("no-sites").hidden = sites.length > 0;
  markSynthetic(sites.some((s) => s.synthetic));
  const pending = [];
  for (const site of sites) {
    const { tr, spark } = row(site);
    body.append(tr);
    const outline = L.geoJSON(site.outline, { style: { className: "sw-site-area", weight: 2, fillOpacity: site.latest_tiles ? 0 : 0.15 } });
    if (site.latest_tiles) L.tileLayer(site.latest_tiles, { maxZoom: 22, className: "sw-image", bounds: outline.getBounds().pad(0.2) }).addTo(map);
    outline.bindTooltip(el("span", { text: site.name }), { sticky: true });
    outline.on("click", () => window.location.assign(site.url));
    outline.addTo(outlines);
    // A site far smaller than the view still gets a mark to click.
    L.circleMarker(outline.getBounds().getCenter(), { radius: 5, className: "sw-site-dot" })
      .bindTooltip(el("span", { text: site.name }))
      .on("click", () => window.location.assign(site.url))
      .addTo(outlines);
    if (!site.sparkline && site.observations > 0) {
      pending.push(api(siteApi(site.name, "/activity")).then((a) => drawSparkline(spark, a.sparkline), () => drawSparkline(spark, { dates: [], values: [], anomalies: [] })));
    } else if (!site.sparkline) {
      drawSparkline(spark, { dates: [], values: [], anomalies: [] });
    }
  }
  if (sites.length) map.fitBounds(outlines.getBounds(), { padding: [30, 30], maxZoom: 17 });
  else map.setView([20, 0], 2);
  await Promise.all(pending);
}

boot(start);
