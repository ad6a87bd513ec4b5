// The Cluster page: members with their load, the leader, the quorum, and
// runs that look stuck. Refreshed every few seconds.
import { h, when, ago, badge } from "./dom.js";
import { api, query } from "./api.js";

const POLL_MS = 5000;
const STUCK_AFTER_MS = 5 * 60 * 1000;

export function render(main, ctx) {
  let timer = null;
  let stopped = false;
  const view = h("div", { id: "cluster" }, h("p", { class: "muted" }, "Loading…"));
  main.append(h("h1", null, "Cluster"), view);

  async function load() {
    try {
      const [m, running] = await Promise.all([
        api("GET", "/cluster/members"),
        api("GET", "/runs" + query({ status: "running", limit: "200" })).then((x) => x.runs || []).catch(() => []),
      ]);
      if (stopped) return;
      view.replaceChildren(...page(m, running).filter(Boolean));
    } catch (e) {
      if (stopped) return;
      ctx.fail(e);
    }
    if (!stopped) timer = setTimeout(load, POLL_MS);
  }
  load();
  return () => { stopped = true; clearTimeout(timer); };
}

function page(m, running) {
  const q = m.quorum || {};
  const members = m.members || [];
  const stuck = running.filter((r) => Date.now() - new Date(r.startedAt).getTime() > STUCK_AFTER_MS);
  return [
    h("dl", { class: "facts wide", id: "cluster-facts" },
      fact("Leader", m.leader || "none"),
      fact("Leader state", m.leaderNodeState),
      fact("Quorum", (q.ok ? "ok" : "NOT MET") + " — " + q.live + " live of " + q.size + ", " + q.required + " needed"),
      fact("Redis", m.redis || "none (one agent)")),
    q.ok === false ? h("p", { class: "error" }, "Below quorum: listeners are paused until enough agents are live.") : null,
    h("h2", null, "Members"),
    h("div", { class: "table-wrap" }, h("table", { id: "members" },
      h("thead", null, h("tr", null, ["Agent", "Address", "Load", "Running", "Stuck", "Version", "Started", "Last seen"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", null, members.map((a) => h("tr", { "data-agent": a.id },
        h("td", null, a.id, a.leader ? [" ", badge("leader")] : null),
        h("td", { class: "mono" }, a.address),
        h("td", null, load(a)),
        h("td", { class: "num" }, a.running ?? ""),
        h("td", { class: "num" + (a.stuckRuns ? " warn" : "") }, a.stuckRuns ?? ""),
        h("td", null, a.version),
        h("td", null, when(a.startedAt)),
        h("td", null, ago(a.lastSeen))))))),
    h("h2", null, "Runs running for more than " + STUCK_AFTER_MS / 60000 + " minutes"),
    stuck.length
      ? h("ul", { id: "stuck-runs" }, stuck.map((r) => h("li", null,
        h("a", { href: "/console/runs/" + encodeURIComponent(r.id), "data-nav": true }, r.project + " / " + r.operation),
        " on " + r.agent + ", started " + ago(r.startedAt))))
      : h("p", { class: "muted", id: "stuck-runs" }, "None."),
  ];
}

function load(a) {
  const cap = a.capacity || 0;
  const used = a.inFlight || 0;
  return h("span", { class: "load" },
    h("meter", { min: "0", max: String(Math.max(cap, 1)), value: String(used), "aria-label": "Load of " + a.id }),
    " " + used + " / " + cap + " workers");
}

function fact(label, value) {
  if (value === undefined || value === null || value === "") return null;
  return h("div", null, h("dt", null, label), h("dd", null, String(value)));
}
