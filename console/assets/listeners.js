// The Listeners page, after the seed's Management Console Listeners tab:
// a search box (any part of the listener, an operation name or the status,
// not case-sensitive), a Refresh button, each listener with connection,
// destination and state, a disclosure triangle revealing its operations,
// and On/Off switches with the cascade: turning a listener off turns its
// operations off; turning it on leaves them as they are. Where the agent
// knows them (its embedded broker), each listener shows its destination's
// backlog, messages in flight and consumers.
import { h } from "./dom.js";
import { api, seg } from "./api.js";

const CASCADE_NOTE = "Turning it on leaves its operations as they are; turning it off turns them all off.";

export function render(main, ctx) {
  let all = [];
  const open = new Set(); // ids of listeners whose operations are shown
  const search = h("input", {
    id: "listener-search", type: "search", value: ctx.search.get("q") || "",
    placeholder: "listener, operation or status", autocomplete: "off",
  });
  const refresh = h("button", { type: "button", id: "listener-refresh" }, "↻ Refresh");
  const status = h("p", { class: "muted", id: "listener-status", role: "status" });
  const list = h("ul", { class: "listeners", id: "listeners" });
  main.append(
    h("h1", null, "Listeners"),
    h("div", { class: "toolbar" },
      h("label", { for: "listener-search" }, "Search"), search, refresh),
    status, list);

  function show() {
    const q = search.value.trim().toLowerCase();
    const shown = all.filter((l) => matches(l, q));
    const on = {
      disclose(id) {
        if (open.has(id)) open.delete(id); else open.add(id);
        show();
      },
      setState,
    };
    // The list is rebuilt: keep the keyboard's place on the same control.
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : "";
    list.replaceChildren(...shown.map((l) => item(l, open.has(l.id), on)));
    if (focused) {
      const again = list.querySelector('[data-key="' + CSS.escape(focused) + '"]');
      if (again) again.focus();
    }
    status.textContent = all.length === 0
      ? "No listeners: deploy a project with listeners (Projects page)."
      : shown.length === all.length
        ? all.length + " listener" + (all.length === 1 ? "" : "s")
        : shown.length + " of " + all.length + " listeners match “" + search.value.trim() + "”";
  }

  async function setState(path, enabled) {
    try {
      const l = await api("PUT", path, { json: { enabled } });
      all = all.map((x) => (x.id === l.id ? l : x));
      show();
    } catch (e) {
      ctx.fail(e);
      show();
    }
  }

  async function load() {
    refresh.disabled = true;
    try {
      all = (await api("GET", "/listeners")).listeners || [];
      show();
    } catch (e) {
      status.textContent = "Could not load the listeners.";
      ctx.fail(e);
    } finally {
      refresh.disabled = false;
    }
  }

  search.addEventListener("input", () => {
    const u = new URL(location.href);
    if (search.value) u.searchParams.set("q", search.value); else u.searchParams.delete("q");
    history.replaceState(null, "", u.pathname + u.search);
    show();
  });
  refresh.addEventListener("click", load);
  load();
}

// matches says whether a listener matches a lower-case search: any part of
// its id, name, project, destination, status, connection or an operation
// name (the fields the API's ?q= matches).
function matches(l, q) {
  if (!q) return true;
  const fields = [l.id, l.name, l.project, l.destination, l.status, l.connection, ...(l.operations || []).map((o) => o.name)];
  return fields.some((f) => String(f || "").toLowerCase().includes(q));
}

// item is one listener: its row (disclosure, facts, switch with the
// cascade note) and its operations. on.disclose(id) shows or hides the
// operations; on.setState(path, enabled) switches.
function item(l, expanded, on) {
  const opsId = "ops-" + l.id.replace(/[^\w-]/g, "_");
  const disclosure = h("button", {
    type: "button", class: "disclosure", "aria-expanded": String(expanded), "aria-controls": opsId,
    onclick: () => on.disclose(l.id), "data-key": "disclose " + l.id,
  }, h("span", { class: "tri", "aria-hidden": "true" }, expanded ? "▾" : "▸"),
  h("span", { class: "name" }, l.name), h("span", { class: "sr-only" }, " (operations)"));
  const noteId = "note-" + opsId;
  const ops = (l.operations || []).map((o) => h("li", { class: "binding", "data-operation": o.name },
    h("span", { class: "op-name" }, o.name),
    toggle(o.enabled, "Operation " + o.name + " of listener " + l.id,
      () => on.setState("/listeners/" + seg(l.id) + "/operations/" + seg(o.name) + "/state", !o.enabled),
      !l.enabled && "Turn the listener on first", null, "operation " + l.id + " " + o.name)));
  return h("li", { class: "listener", "data-id": l.id, "data-status": l.status },
    h("div", { class: "listener-row" },
      h("div", { class: "who" }, disclosure, h("span", { class: "project" }, l.project)),
      h("dl", { class: "facts" },
        fact("Connection", "STOMP " + (l.connection || "default")),
        fact("Destination", l.destination),
        fact("Ack mode", l.ackMode),
        fact("Status", l.status, "status"),
        counts(l)),
      h("div", { class: "switch-cell" },
        toggle(l.enabled, "Listener " + l.id, () => on.setState("/listeners/" + seg(l.id) + "/state", !l.enabled), null, noteId, "listener " + l.id),
        h("small", { class: "note", id: noteId }, CASCADE_NOTE))),
    h("ul", { class: "operations", id: opsId, hidden: !expanded, "aria-label": "Operations fed by " + l.name }, ops));
}

// counts shows the destination's messages on the agent's embedded broker;
// nothing when the API leaves them out (another broker).
function counts(l) {
  if (typeof l.backlog !== "number") return null;
  return h("div", { class: "counts", "data-backlog": l.backlog, "data-inflight": l.inFlight },
    h("dt", null, "Messages"),
    h("dd", null, l.backlog + " waiting, " + l.inFlight + " in flight, " +
      l.consumers + " consumer" + (l.consumers === 1 ? "" : "s")));
}

function fact(label, value, cls) {
  return h("div", { class: cls || null }, h("dt", null, label), h("dd", null, value || "—"));
}

// toggle is an On/Off switch: a button with role switch and aria-checked;
// key names it across re-renders (focus).
function toggle(on, label, act, disabledWhy, describedBy, key) {
  const b = h("button", {
    type: "button", role: "switch", class: "toggle" + (on ? " on" : ""), "aria-checked": String(on),
    "aria-label": label, "aria-describedby": describedBy, disabled: Boolean(disabledWhy), title: disabledWhy || null, "data-key": key,
  }, h("span", { class: "knob", "aria-hidden": "true" }), h("span", { class: "state" }, on ? "On" : "Off"));
  // While the change is under way further presses are ignored; the button
  // stays enabled so that it keeps the keyboard focus.
  b.addEventListener("click", async () => {
    if (b.getAttribute("aria-busy") === "true") return;
    b.setAttribute("aria-busy", "true");
    await act();
  });
  return b;
}
