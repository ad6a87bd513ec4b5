// The Runs page: run history newest first, refreshed every few seconds
// while "Live" is on, with filters kept in the URL (?project=&status=…).
import { h, when, badge } from "./dom.js";
import { api, query } from "./api.js";

const POLL_MS = 3000;
const STATUSES = ["running", "succeeded", "failed", "timed_out"];
const OUTCOMES = ["committed", "rolled_back", "dead_lettered", "skipped_duplicate", "refused"];
const TRIGGERS = ["webhook", "listener", "operation", "schedule"];
const FIELDS = ["project", "operation", "trigger", "schedule", "status", "outcome", "messageId"];

export function render(main, ctx) {
  const f = {};
  for (const k of FIELDS) f[k] = ctx.search.get(k) || "";
  let timer = null;
  let stopped = false;

  let before = ctx.search.get("before") || ""; // paging cursor: runs older than this id
  const limit = ctx.search.get("limit") || ""; // page size; the page's default when empty
  const controls = filterControls(f);
  const live = h("input", { type: "checkbox", id: "runs-live", checked: true });
  const form = h("form", { class: "filters", id: "run-filters", role: "search" },
    FIELDS.map((k) => h("div", { class: "field" }, h("label", { for: controls[k].id }, LABELS[k]), controls[k])),
    h("div", { class: "field buttons" },
      h("button", { type: "submit" }, "Apply"),
      h("button", { type: "button", class: "secondary", onclick: reset }, "Clear")));
  const status = h("p", { class: "muted", id: "runs-status", role: "status" });
  const body = h("tbody", { id: "runs-body" });
  const pager = h("div", { class: "actions", id: "runs-pager" });
  main.append(h("h1", null, "Runs"), form,
    h("div", { class: "toolbar" }, h("label", { class: "check" }, live, " Live (every " + POLL_MS / 1000 + "s)"), status),
    h("div", { class: "table-wrap" }, h("table", { class: "runs" },
      h("thead", null, h("tr", null, ["Started", "Project", "Operation", "Trigger", "Status", "Outcome", "Attempt", "Message id", "Duration", "Agent"]
        .map((c) => h("th", { scope: "col" }, c)))), body)), pager);

  function reset() {
    for (const k of FIELDS) controls[k].value = "";
    apply();
  }
  function apply() {
    for (const k of FIELDS) f[k] = controls[k].value.trim();
    turn("");
  }
  // turn shows the runs older than run id to ("" = the newest).
  function turn(to) {
    before = to;
    history.replaceState(null, "", "/console/runs" + query({ ...f, before, limit }));
    load();
  }
  form.addEventListener("submit", (ev) => { ev.preventDefault(); apply(); });
  for (const k of ["project", "trigger", "status", "outcome"]) controls[k].addEventListener("change", apply);
  live.addEventListener("change", () => (live.checked ? load() : clearTimeout(timer)));

  async function load() {
    clearTimeout(timer);
    try {
      const res = await api("GET", "/runs" + query({ ...f, before, limit: limit || "200" }));
      if (stopped) return;
      // The trigger filter is sent and also applied here: an API without
      // it ignores the parameter.
      const rows = (res.runs || []).filter((r) => !f.trigger || r.trigger === f.trigger);
      body.replaceChildren(...rows.map(row));
      if (rows.length === 0) body.append(h("tr", null, h("td", { colspan: "10", class: "muted" }, "No runs match.")));
      status.textContent = rows.length + " run" + (rows.length === 1 ? "" : "s") + (before ? " (older page)" : "") +
        " · updated " + new Date().toLocaleTimeString();
      pager.replaceChildren(...[
        before ? h("button", { type: "button", class: "secondary", onclick: () => turn("") }, "← Newest runs") : null,
        res.next ? h("button", { type: "button", class: "secondary", onclick: () => turn(res.next) }, "Older runs →") : null,
      ].filter(Boolean));
    } catch (e) {
      if (stopped) return;
      status.textContent = "Could not load runs.";
      ctx.fail(e);
    }
    if (live.checked && !stopped && !before) timer = setTimeout(load, POLL_MS);
  }

  api("GET", "/projects").then((res) => {
    for (const p of res.projects || []) {
      if (p.name !== f.project) controls.project.append(h("option", { value: p.name }, p.name));
    }
  }).catch(() => {});
  load();
  return () => { stopped = true; clearTimeout(timer); };
}

const LABELS = { project: "Project", operation: "Operation", trigger: "Trigger", schedule: "Schedule", status: "Status", outcome: "Outcome", messageId: "Message id" };

// filterControls makes the filter form's inputs, set to the filters f.
function filterControls(f) {
  const project = h("select", { id: "f-project", name: "project" }, h("option", { value: "" }, "any"));
  if (f.project) project.append(h("option", { value: f.project }, f.project));
  project.value = f.project;
  return {
    project,
    operation: h("input", { id: "f-operation", name: "operation", type: "search", value: f.operation }),
    trigger: choice("f-trigger", TRIGGERS, f.trigger),
    schedule: h("input", { id: "f-schedule", name: "schedule", type: "search", value: f.schedule, size: "12" }),
    status: choice("f-status", STATUSES, f.status),
    outcome: choice("f-outcome", OUTCOMES, f.outcome),
    messageId: h("input", { id: "f-messageId", name: "messageId", type: "search", value: f.messageId }),
  };
}

function choice(id, values, current) {
  const s = h("select", { id, name: id.slice(2) }, h("option", { value: "" }, "any"),
    values.map((v) => h("option", { value: v }, v.replace(/_/g, " "))));
  s.value = current;
  return s;
}

function row(r) {
  const link = "/console/runs/" + encodeURIComponent(r.id);
  return h("tr", { "data-run": r.id, "data-status": r.status, "data-outcome": r.outcome || "" },
    h("td", null, h("a", { href: link, "data-nav": true }, when(r.startedAt))),
    h("td", null, r.project),
    h("td", null, r.operation),
    h("td", null, r.trigger, r.schedule ? h("span", { class: "muted schedule" }, " " + r.schedule) : null),
    h("td", null, badge(r.status)),
    h("td", null, badge(r.outcome)),
    h("td", { class: "num" }, r.attempt || ""),
    h("td", { class: "mono" }, r.messageId ? h("a", { href: "/console/runs?messageId=" + encodeURIComponent(r.messageId), "data-nav": true, title: "Every attempt of this message" }, r.messageId) : ""),
    h("td", { class: "num" }, r.durationMs != null ? r.durationMs.toFixed(1) + " ms" : ""),
    h("td", null, r.agent));
}
