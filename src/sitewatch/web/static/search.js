// Search: objects of a colour and size on a site's images (sitewatch find), as evidence chips that
// open the compare view on their date.
// URL: ?colour=red&length=12-20[&width=2-4][&zone=Z][&from=DAY][&to=DAY]: a URL with a query runs it.
import { api, boot, clearError, el, fmt, markSynthetic, page, readParams, showError, siteApi, writeParams } from "./common.js";

const name = page.site;
const fields = { colour: "find-colour", length: "find-length", width: "find-width", zone: "find-zone", from: "find-from", to: "find-to" };

function formState() {
  return Object.fromEntries(Object.entries(fields).map(([key, id]) => [key, document.getElementById(id).value.trim()]));
}

function chip(result) {
  return el(
    "a",
    { class: "chip", href: result.compare_url, testid: "find-chip", "data-date": result.date, title: "compare this image with the one before" },
    result.chip ? el("img", { src: result.chip, alt: `${result.colour} object on ${result.date}`, loading: "lazy" }) : el("div", { class: "empty", text: "no chip" }),
    el(
      "div",
      { class: "meta" },
      el("b", { text: result.date }),
      el("span", { text: `score ${result.score.toFixed(2)}` }),
      el("span", { text: `${fmt.metres(result.length_m)} × ${fmt.metres(result.width_m)}` }),
      el("span", { class: "muted", text: result.zone ?? "outside zones" }),
    ),
  );
}

async function run() {
  const query = formState();
  writeParams(query);
  const button = document.getElementById("find-go");
  button.disabled = true;
  button.textContent = "Searching…";
  document.getElementById("result-count").textContent = "searching every usable image…";
  try {
    const body = { colour: query.colour, length: query.length, width: query.width || null, zone: query.zone || null, date_from: query.from || null, date_to: query.to || null };
    const result = await api(siteApi(name, "/find"), { method: "POST", body });
    clearError();
    document.getElementById("chips").replaceChildren(...result.results.map(chip));
    const count = result.results.length;
    const wide = result.query.width ? `, ${result.query.width} wide` : "";
    document.getElementById("result-count").textContent =
      `${count} best match${count === 1 ? "" : "es"}: ${result.query.colour}, ${result.query.length} long${wide}`;
    document.getElementById("unsearched").replaceChildren(...result.unsearched.map((u) => el("li", { text: `${u.date} not searched: ${u.reason}` })));
    if (!result.results.length) document.getElementById("chips").append(el("p", { class: "empty", text: "No matches on the images searched." }));
  } catch (error) {
    document.getElementById("result-count").textContent = "";
    showError(error);
  } finally {
    button.disabled = false;
    button.textContent = "Search";
  }
}

async function start() {
  const params = readParams();
  document.getElementById("find-colour").replaceChildren(...page.colours.map((c) => el("option", { value: c, text: c, selected: c === (params.colour ?? "red") })));
  const site = (await api(siteApi(name))).site;
  markSynthetic(site.synthetic);
  document.getElementById("find-zone").append(...site.zones.map((z) => el("option", { value: z.name, text: z.name })));
  for (const [key, id] of Object.entries(fields)) if (params[key] && key !== "colour") document.getElementById(id).value = params[key];
  document.getElementById("find-form").addEventListener("submit", (submit) => {
    submit.preventDefault();
    run();
  });
  if (params.colour && params.length) await run();
}

boot(start);
