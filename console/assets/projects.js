// The Projects page: each project's versions (notes, dates, the active
// one) with rollback after a confirmation, its live operations with their
// triggers (webhook URL with a copy button, listeners, schedules), its
// schedules (clock, state, next run, On/Off, Run now), delete after the
// user types the project's name, and a deploy form that uploads a .tgz
// bundle and shows the agent's problems as file:line:col.
import { h, when, copyButton, confirmAction, confirmTyped } from "./dom.js";
import { api, seg, location as loc } from "./api.js";

const NAME_RULE = "[a-z0-9_\\-][a-z0-9._\\-]{0,62}";

export function render(main, ctx) {
  const list = h("div", { id: "projects" });
  const status = h("p", { class: "muted", id: "projects-status", role: "status" });
  main.append(h("h1", null, "Projects"), deployForm(ctx, load), status, list);

  async function load() {
    try {
      const [ps, ls, ss] = await Promise.all([
        api("GET", "/projects").then((x) => x.projects || []),
        api("GET", "/listeners").then((x) => x.listeners || []).catch(() => []),
        schedulesOrNone(ctx),
      ]);
      // Each project's own answer adds its live operations; an agent that
      // does not give them leaves the list's entry as it is.
      const full = await Promise.all(ps.map((p) => api("GET", "/projects/" + seg(p.name)).catch(() => p)));
      list.replaceChildren(...full.map((p) => card(p, ls.filter((l) => l.project === p.name), ss.filter((x) => x.project === p.name))));
      status.textContent = ps.length ? ps.length + " project" + (ps.length === 1 ? "" : "s") : "No projects yet: deploy one above.";
    } catch (e) {
      status.textContent = "Could not load the projects.";
      ctx.fail(e);
    }
  }

  function card(p, listeners, schedules) {
    const versions = [...(p.versions || [])].sort((a, b) => b.version - a.version);
    return h("article", { class: "card project", "data-project": p.name },
      h("div", { class: "card-head" },
        h("h2", null, p.name, " ", h("span", { class: "muted" }, "version " + p.activeVersion + " live")),
        h("button", { type: "button", class: "danger small delete-project", "aria-label": "Delete project " + p.name,
          onclick: () => remove(p) }, "Delete…")),
      h("div", { class: "table-wrap" }, h("table", { class: "versions" },
        h("caption", null, "Versions"),
        h("thead", null, h("tr", null, ["Version", "Deployed", "Note", "Size", ""].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", null, versions.map((v) => h("tr", { "data-version": v.version },
          h("td", { class: "num" }, v.version),
          h("td", null, when(v.createdAt)),
          h("td", null, v.note || ""),
          h("td", { class: "num" }, v.size ? (v.size / 1024).toFixed(1) + " KiB" : ""),
          h("td", null, v.version === p.activeVersion
            ? h("strong", { class: "live" }, "live")
            : h("button", { type: "button", class: "secondary rollback", "aria-label": "Make version " + v.version + " of " + p.name + " live",
              onclick: () => rollback(p, v) }, v.version < p.activeVersion ? "Roll back to this" : "Make live"))))))),
      operations(p, schedules),
      listeners.length ? h("div", null, h("h3", null, "Listeners"), h("ul", null, listeners.map((l) =>
        h("li", null, h("a", { href: "/console/listeners?q=" + encodeURIComponent(l.id), "data-nav": true }, l.name),
          " on " + l.destination + " → " + (l.operations || []).map((o) => o.name).join(", ") + " (" + l.status + ")")))) : null,
      schedules.length ? scheduleList(schedules, act, runNow) : null,
      h("p", null, h("a", { href: "/console/runs?project=" + encodeURIComponent(p.name), "data-nav": true }, "Runs of " + p.name)));
  }

  async function act(method, path, opts, done) {
    try {
      await api(method, path, opts);
      await load();
      status.textContent = done + " " + status.textContent;
    } catch (e) {
      ctx.fail(e);
    }
  }

  // runNow starts a schedule's operations at once and links to the run.
  async function runNow(x) {
    try {
      const res = await api("POST", "/schedules/" + seg(x.id) + "/run");
      await load();
      status.replaceChildren("Schedule " + x.name + " started: ",
        h("a", { href: "/console/runs/" + encodeURIComponent(res.runId), "data-nav": true, class: "started-run" }, "run " + res.runId),
        ". " + status.textContent);
    } catch (e) {
      ctx.fail(e);
    }
  }

  async function remove(p) {
    const ok = await confirmTyped("Delete project " + p.name + "?",
      "Every version of " + p.name + " is deleted; its webhooks answer 404 and its listeners stop on every agent " +
      "(runs in progress finish). Its runs, dead letters and secrets are kept. This cannot be undone.",
      p.name, "Delete project");
    if (!ok) return;
    try {
      await api("DELETE", "/projects/" + seg(p.name));
      await load();
      status.textContent = "Deleted " + p.name + ". " + status.textContent;
    } catch (e) {
      ctx.fail(e);
    }
  }

  async function rollback(p, v) {
    const ok = await confirmAction("Make version " + v.version + " of " + p.name + " live?",
      "Version " + v.version + " becomes live again; version " + p.activeVersion + " stays in the history and can be made live the same way.", v.version < p.activeVersion ? "Roll back" : "Make live");
    if (!ok) return;
    try {
      await api("POST", "/projects/" + seg(p.name) + "/rollback", { json: { version: v.version } });
      await load();
      status.textContent = p.name + " is back to version " + v.version + ". " + status.textContent;
    } catch (e) {
      ctx.fail(e);
    }
  }

  load();
}

// schedulesOrNone lists the agent's schedules; an agent without schedules
// answers 404 and the section is left out; another error is shown.
function schedulesOrNone(ctx) {
  return api("GET", "/schedules").then((x) => (x && x.schedules) || []).catch((e) => {
    if (e.status !== 404) ctx.fail(e);
    return [];
  });
}

// clock says when a schedule ticks: "every 1h", or "cron 30 7 * * MON-FRI
// (Europe/Berlin)".
function clock(x) {
  return x.cron ? "cron " + x.cron + " (" + (x.timezone || "UTC") + ")" : "every " + x.every;
}

// scheduleList shows a project's schedules: clock, state, next run, the
// operations each tick runs, On/Off, Run now and a link to its runs.
// act(method, path, opts, done) calls the API and reloads the page.
function scheduleList(schedules, act, runNow) {
  return h("div", null, h("h3", null, "Schedules"), h("ul", { class: "schedules" }, schedules.map((x) => h("li", { "data-schedule": x.id },
    h("span", { class: "op-name" }, x.name), " ",
    h("code", { class: "clock" }, clock(x)), " ",
    h("span", { class: "status" }, x.status || (x.enabled ? "on" : "off")), " ",
    h("span", { class: "muted next" }, x.nextRunAt ? "next run " + when(x.nextRunAt) : "no next run"), " ",
    h("button", {
      type: "button", role: "switch", class: "toggle" + (x.enabled ? " on" : ""), "aria-checked": String(x.enabled),
      "aria-label": "Schedule " + x.name, onclick: () => act("PUT", "/schedules/" + seg(x.id) + "/state", { json: { enabled: !x.enabled } }, "Schedule " + x.name + " turned " + (x.enabled ? "off." : "on.")),
    }, h("span", { class: "knob", "aria-hidden": "true" }), h("span", { class: "state" }, x.enabled ? "On" : "Off")), " ",
    h("button", { type: "button", class: "secondary small run-now", "aria-label": "Run schedule " + x.name + " now", onclick: () => runNow(x) }, "Run now"), " ",
    h("a", { class: "schedule-runs", href: "/console/runs?" + new URLSearchParams({ trigger: "schedule", project: x.project, schedule: x.name }), "data-nav": true }, "its runs"),
    h("div", { class: "trigger muted" }, "Runs " + (x.operations || []).join(", ") +
      (x.catchUp === "one" ? "; catches up one missed tick" : "") + (x.overlap ? "; ticks may overlap" : ""))))));
}

// operations lists the live version's operations (p.operations, from GET
// /projects/{name}) with their triggers: the webhook's absolute URL with a
// copy button, the listeners feeding each, and the schedules running each
// (with their clocks, from schedules).
function operations(p, schedules) {
  if (!Array.isArray(p.operations) || !p.operations.length) return null;
  return h("div", null, h("h3", null, "Operations"), h("ul", { class: "operations-list" }, p.operations.map((o) => {
    const url = o.webhook ? window.location.origin + o.webhook.url : "";
    const code = url ? h("code", { class: "url" }, url) : null;
    const ls = o.listeners || [];
    const ss = (o.schedules || []).map((id) => schedules.find((x) => x.id === id) || { id, name: id.slice(id.indexOf("/") + 1) });
    return h("li", { "data-operation": o.name },
      h("span", { class: "op-name" }, o.name), " ",
      h("span", { class: "muted" }, [o.type === "script" ? "" : o.type, o.timeout ? "time limit " + o.timeout : ""].filter(Boolean).join(", ")),
      url ? h("div", { class: "trigger webhook" }, "Webhook: POST ", code, " ", copyButton(url, "Copy the webhook URL of " + o.name, code)) : null,
      ls.length ? h("div", { class: "trigger listeners" }, "Listeners: ", ls.map((id, i) => [i ? ", " : "",
        h("a", { href: "/console/listeners?q=" + encodeURIComponent(id), "data-nav": true }, id)])) : null,
      ss.length ? h("div", { class: "trigger schedules" }, "Schedules: ", ss.map((x, i) => [i ? ", " : "",
        h("span", { class: "schedule", "data-schedule": x.id }, x.name), x.cron || x.every ? " (" + clock(x) + ")" : ""])) : null,
      !url && !ls.length && !ss.length ? h("div", { class: "trigger muted" }, "No webhook, listener or schedule.") : null);
  })));
}

// deployForm uploads a gzipped tar to PUT /api/v1/projects/{name}.
function deployForm(ctx, reload) {
  const name = h("input", { id: "deploy-name", name: "project", required: true, pattern: NAME_RULE, autocomplete: "off", spellcheck: "false" });
  const file = h("input", { id: "deploy-file", name: "bundle", type: "file", required: true, accept: ".tgz,.tar.gz,application/gzip" });
  const result = h("div", { id: "deploy-result", role: "status" });
  const submit = h("button", { type: "submit" }, "Deploy");
  file.addEventListener("change", () => {
    const f = file.files[0];
    if (f && !name.value) name.value = f.name.replace(/\.(tgz|tar\.gz)$/, "").toLowerCase();
  });
  const form = h("form", { class: "card deploy", id: "deploy-form" },
    h("h2", null, "Deploy a project"),
    h("p", { class: "muted" }, "Upload a gzipped tar of the project folder (opsrunner.yaml at its root), e.g. ",
      h("code", null, "tar czf orders.tgz -C samples/orders ."), "."),
    h("div", { class: "field" }, h("label", { for: "deploy-name" }, "Project name"), name),
    h("div", { class: "field" }, h("label", { for: "deploy-file" }, "Bundle (.tgz)"), file),
    h("div", { class: "field buttons" }, submit), result);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = file.files[0];
    if (!f || !name.value) return;
    submit.disabled = true;
    result.replaceChildren(h("p", { class: "muted" }, "Deploying…"));
    try {
      const v = await api("PUT", "/projects/" + seg(name.value.trim()), { body: f, contentType: "application/gzip" });
      result.replaceChildren(h("p", { class: "ok" }, "Deployed " + v.project + " version " + v.version + "."));
      reload();
    } catch (e) {
      result.replaceChildren(...problems(e));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

// problems shows a failed deploy: the message and each located problem.
function problems(e) {
  const out = [h("p", { class: "error" }, "Deploy failed" + (e.status ? " (" + e.status + ")" : "") + ": " + e.message)];
  if (Array.isArray(e.details) && e.details.length) {
    out.push(h("ul", { class: "problems" }, e.details.map((d) => h("li", null,
      d.file ? h("code", { class: "loc" }, loc(d)) : null, d.file ? " " : null, d.message || "",
      d.field ? h("span", { class: "muted" }, " (" + d.field + ")") : null))));
  }
  return out;
}
