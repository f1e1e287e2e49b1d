// Alerts: every alert, newest image first, with its rule, site, summary, evidence link and acknowledgement.
// URL: ?open=1 shows only alerts not yet acknowledged.
import { api, boot, el, fmt, readParams, showError, sitePage, writeParams } from "./common.js";

const state = { open: "" };
let alerts = [];

function ackButton(alert) {
  if (alert.acknowledged) return el("span", { class: "muted small", title: `acknowledged ${fmt.datetime(alert.acknowledged)}`, text: "acknowledged" });
  return el("button", { type: "button", class: "small", testid: "alert-ack", text: "Acknowledge", on: { click: () => acknowledge(alert) } });
}

function render() {
  const shown = state.open ? alerts.filter((a) => !a.acknowledged) : alerts;
  const body = document.querySelector("#alerts tbody");
  body.replaceChildren(
    ...shown.map((alert) =>
      el(
        "tr",
        { testid: "alert-row", "data-alert-id": String(alert.id), class: alert.acknowledged ? "acknowledged" : "" },
        el("td", { class: "mono", text: alert.day }),
        el("td", {}, el("a", { href: sitePage(alert.site), text: alert.site })),
        el("td", {}, el("b", { text: alert.rule })),
        el("td", {}, el("span", { class: "tag", text: alert.kind })),
        el("td", { class: "summary", text: alert.summary }),
        el("td", { class: "mono muted", title: alert.created, text: fmt.datetime(alert.created) }),
        el("td", {}, el("a", { href: alert.evidence_url, testid: "alert-evidence", text: "Compare images" })),
        el("td", {}, ackButton(alert)),
      ),
    ),
  );
  const open = alerts.filter((a) => !a.acknowledged).length;
  document.getElementById("alert-count").replaceChildren(
    `${alerts.length} alert${alerts.length === 1 ? "" : "s"}, ${open} open · `,
    el("a", { href: state.open ? "/alerts" : "/alerts?open=1", text: state.open ? "show all" : "show open only", on: { click: toggleOpen } }),
  );
  document.getElementById("no-alerts").hidden = alerts.length > 0;
}

function toggleOpen(click) {
  click.preventDefault();
  state.open = state.open ? "" : "1";
  writeParams(state);
  render();
}

async function acknowledge(alert) {
  try {
    const result = await api(`/api/alerts/${alert.id}/ack`, { method: "POST", body: {} });
    alert.acknowledged = result.acknowledged;
    render();
  } catch (error) {
    showError(error);
  }
}

async function start() {
  Object.assign(state, readParams());
  alerts = await api("/api/alerts");
  render();
}

boot(start);
