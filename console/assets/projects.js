// The Projects page: each project's versions (notes, dates, the active
// one) with rollback after a confirmation, its live operations with their
// triggers (webhook URL with a copy button, listeners), delete after the
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
        // An agent without schedules answers 404: the section is left out.
        api("GET", "/schedules").then((x) => (Array.isArray(x) ? x : (x && x.schedules) || [])).catch(() => []),
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
      operations(p),
      listeners.length ? h("div", null, h("h3", null, "Listeners"), h("ul", null, listeners.map((l) =>
        h("li", null, h("a", { href: "/console/listeners?q=" + encodeURIComponent(l.id), "data-nav": true }, l.name),
          " on " + l.destination + " → " + (l.operations || []).map((o) => o.name).join(", ") + " (" + l.status + ")")))) : null,
      schedules.length ? scheduleList(schedules, act) : null,
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

// scheduleList shows a project's schedules: next run, On/Off, Run now;
// act(method, path, opts, done) calls the API and reloads the page.
function scheduleList(schedules, act) {
  return h("div", null, h("h3", null, "Schedules"), h("ul", { class: "schedules" }, schedules.map((x) => h("li", { "data-schedule": x.id },
    h("span", { class: "op-name" }, x.name), " ",
    h("span", { class: "muted" }, x.enabled ? (x.nextRunAt ? "next " + when(x.nextRunAt) : "") : "off"), " ",
    h("button", {
      type: "button", role: "switch", class: "toggle" + (x.enabled ? " on" : ""), "aria-checked": String(x.enabled),
      "aria-label": "Schedule " + x.name, onclick: () => act("PUT", "/schedules/" + seg(x.id) + "/state", { json: { enabled: !x.enabled } }, "Schedule " + x.name + " turned " + (x.enabled ? "off." : "on.")),
    }, h("span", { class: "knob", "aria-hidden": "true" }), h("span", { class: "state" }, x.enabled ? "On" : "Off")), " ",
    h("button", { type: "button", class: "secondary small", onclick: () => act("POST", "/schedules/" + seg(x.id) + "/run", {}, "Schedule " + x.name + " started.") }, "Run now"), " ",
    h("a", { href: "/console/runs?trigger=schedule&schedule=" + encodeURIComponent(x.id), "data-nav": true }, "its runs")))));
}

// operations lists the live version's operations (p.operations, from GET
// /projects/{name}) with their triggers: the webhook's absolute URL with a
// copy button, and the listeners feeding each.
function operations(p) {
  if (!Array.isArray(p.operations) || !p.operations.length) return null;
  return h("div", null, h("h3", null, "Operations"), h("ul", { class: "operations-list" }, p.operations.map((o) => {
    const url = o.webhook ? window.location.origin + o.webhook.url : "";
    const code = url ? h("code", { class: "url" }, url) : null;
    const ls = o.listeners || [];
    return h("li", { "data-operation": o.name },
      h("span", { class: "op-name" }, o.name), " ",
      h("span", { class: "muted" }, [o.type === "script" ? "" : o.type, o.timeout ? "time limit " + o.timeout : ""].filter(Boolean).join(", ")),
      url ? h("div", { class: "trigger webhook" }, "Webhook: POST ", code, " ", copyButton(url, "Copy the webhook URL of " + o.name, code)) : null,
      ls.length ? h("div", { class: "trigger listeners" }, "Listeners: ", ls.map((id, i) => [i ? ", " : "",
        h("a", { href: "/console/listeners?q=" + encodeURIComponent(id), "data-nav": true }, id)])) : null,
      !url && !ls.length ? h("div", { class: "trigger muted" }, "No webhook or listener.") : null);
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
