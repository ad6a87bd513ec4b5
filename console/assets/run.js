// A run's page: its fields, chain, logs, error (with file:line:col marked),
// result, and — for a message — every attempt of that message id and its
// dead letter. Refreshed while the run is running.
import { h, when, badge, withLocations } from "./dom.js";
import { api, query, seg } from "./api.js";

const MAX_RESULT_CHARS = 64 * 1024;

export function render(main, ctx) {
  const id = ctx.params[0];
  let timer = null;
  let stopped = false;
  main.append(h("p", { class: "muted" }, "Loading run " + id + "…"));

  async function load() {
    try {
      const r = await api("GET", "/runs/" + seg(id));
      if (stopped) return;
      const attempts = r.messageId ? await related(r.messageId) : null;
      if (stopped) return;
      main.replaceChildren(...page(r, attempts).filter(Boolean));
      if (r.status === "running") timer = setTimeout(load, 2000);
    } catch (e) {
      if (stopped) return;
      main.replaceChildren(h("h1", null, "Run " + id), h("p", null, "Could not load this run."),
        h("a", { href: "/console/runs", "data-nav": true }, "All runs"));
      ctx.fail(e);
    }
  }
  load();
  return () => { stopped = true; clearTimeout(timer); };
}

// related fetches every run of a message id and its dead letters.
async function related(messageId) {
  const [runs, dls] = await Promise.all([
    api("GET", "/runs" + query({ messageId, limit: "200" })).then((x) => x.runs || []),
    api("GET", "/deadletters").then((x) => (x.deadLetters || []).filter((d) => d.messageId === messageId)).catch(() => []),
  ]);
  return { runs, dls };
}

function page(r, attempts) {
  const out = [
    h("p", null, h("a", { href: "/console/runs", "data-nav": true }, "← Runs")),
    h("h1", null, r.project + " / " + r.operation, " ", badge(r.status), " ", badge(r.outcome)),
    h("dl", { class: "facts wide", id: "run-facts" },
      fact("Run", r.id), fact("Trigger", r.trigger), fact("Started", when(r.startedAt)),
      fact("Finished", when(r.finishedAt)), fact("Duration", r.durationMs != null ? r.durationMs.toFixed(1) + " ms" : ""),
      fact("Agent", r.agent), fact("Version", r.version), fact("Listener", r.listener),
      r.schedule ? h("div", null, h("dt", null, "Schedule"), h("dd", null, h("a", {
        href: "/console/runs?" + new URLSearchParams({ trigger: "schedule", project: r.project, schedule: r.schedule }), "data-nav": true,
      }, r.schedule))) : null,
      fact("Scheduled at", when(r.scheduledAt)),
      fact("Message id", r.messageId), fact("Attempt", r.attempt), fact("HTTP status", r.httpStatus),
      r.parentRunId ? h("div", null, h("dt", null, "Called by"), h("dd", null,
        h("a", { href: "/console/runs/" + encodeURIComponent(r.parentRunId), "data-nav": true }, r.parentRunId))) : null),
  ];
  if (r.error) out.push(h("h2", null, "Error"), h("pre", { class: "error-text", id: "run-error" }, withLocations(r.error)));
  if (r.chain && r.chain.length) {
    out.push(h("h2", null, "Chain"), h("div", { class: "table-wrap" }, h("table", { id: "run-chain" },
      h("thead", null, h("tr", null, ["#", "Operation", "Status", "Duration", "Error"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", null, r.chain.map((s, i) => h("tr", null, h("td", { class: "num" }, i + 1), h("td", null, s.operation),
        h("td", null, badge(s.status)), h("td", { class: "num" }, (s.durationMs || 0).toFixed(1) + " ms"),
        h("td", null, s.error ? withLocations(s.error) : "")))))));
  }
  out.push(h("h2", null, "Logs"));
  out.push(r.logs && r.logs.length
    ? h("ol", { class: "logs", id: "run-logs" }, r.logs.map((l) => h("li", { class: "log-" + l.level },
      h("time", null, new Date(l.time).toLocaleTimeString()), " ", h("span", { class: "lvl" }, l.level), " ", l.message)))
    : h("p", { class: "muted" }, "No log lines."));
  out.push(h("h2", null, "Input"));
  if (r.inputTruncated) out.push(h("p", { class: "muted" }, "The input was larger than the agent keeps (64 KiB); it is not stored."));
  else if (r.input === undefined) out.push(h("p", { class: "muted" }, "This run was started without a body."));
  else out.push(h("pre", { class: "result", id: "run-input" }, cut(JSON.stringify(r.input, null, 2))));
  out.push(h("h2", null, "Result"));
  if (r.resultTruncated) out.push(h("p", { class: "muted" }, "The result was larger than the agent keeps; it is not stored."));
  else if (r.result === undefined) out.push(h("p", { class: "muted" }, "No result kept for this run (the agent keeps results of async, idempotent and called runs)."));
  else {
    out.push(h("pre", { class: "result", id: "run-result" }, cut(JSON.stringify(r.result, null, 2))));
  }
  if (attempts) out.push(...attemptList(r, attempts));
  return out;
}

// cut bounds a JSON text shown on the page.
function cut(text) {
  return text.length > MAX_RESULT_CHARS ? text.slice(0, MAX_RESULT_CHARS) + "\n… (cut at " + MAX_RESULT_CHARS + " characters)" : text;
}

// attemptList answers "what happened to message X": every attempt, its
// dead letter if any.
function attemptList(r, { runs, dls }) {
  const sorted = [...runs].sort((a, b) => (a.startedAt < b.startedAt ? -1 : 1));
  const out = [h("h2", null, "Every attempt of message " + r.messageId)];
  out.push(h("div", { class: "table-wrap" }, h("table", { id: "run-attempts" },
    h("thead", null, h("tr", null, ["Attempt", "Started", "Operation", "Status", "Outcome", "Agent"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", null, sorted.map((a) => h("tr", { class: a.id === r.id ? "current" : null, "data-run": a.id },
      h("td", { class: "num" }, a.attempt || ""),
      h("td", null, h("a", { href: "/console/runs/" + encodeURIComponent(a.id), "data-nav": true, "aria-current": a.id === r.id ? "page" : null }, when(a.startedAt))),
      h("td", null, a.operation), h("td", null, badge(a.status)), h("td", null, badge(a.outcome)), h("td", null, a.agent)))))));
  for (const d of dls) {
    out.push(h("p", { class: "dead-letter-link" }, "Dead-lettered to " + d.deadLetterDestination + " after " + d.attempts + " attempts (" + when(d.failedAt) + "): ",
      h("a", { href: "/console/deadletters?messageId=" + encodeURIComponent(d.messageId), "data-nav": true }, "see the dead letter")));
  }
  return out;
}

function fact(label, value) {
  if (value === undefined || value === null || value === "" || value === 0) return null;
  return h("div", null, h("dt", null, label), h("dd", null, String(value)));
}
