// The Dead letters page: messages that exhausted their redeliveries, with
// cause, attempts and failed-at; replay (send again to the original
// destination) and delete, each after a confirmation.
import { h, when, withLocations, confirmAction } from "./dom.js";
import { api, query, seg } from "./api.js";

export function render(main, ctx) {
  const messageId = ctx.search.get("messageId") || "";
  const listener = ctx.search.get("listener") || "";
  let canDelete = null; // unknown until probed: GET /deadletters/{id} exists with DELETE
  const status = h("p", { class: "muted", id: "dl-status", role: "status" });
  const list = h("div", { id: "deadletters" });
  const refresh = h("button", { type: "button", id: "dl-refresh", onclick: load }, "↻ Refresh");
  main.append(h("h1", null, "Dead letters"),
    h("div", { class: "toolbar" }, refresh,
      messageId || listener ? h("a", { href: "/console/deadletters", "data-nav": true }, "Show all") : null),
    status, list);

  async function load() {
    try {
      let dls = (await api("GET", "/deadletters" + query({ listener }))).deadLetters || [];
      if (messageId) dls = dls.filter((d) => d.messageId === messageId);
      if (canDelete === null && dls.length) canDelete = await probeDelete(dls[0].id);
      list.replaceChildren(...dls.map(card));
      status.textContent = dls.length === 0 ? "No dead letters." : dls.length + " dead letter" + (dls.length === 1 ? "" : "s") +
        (messageId ? " of message " + messageId : "") + (listener ? " of listener " + listener : "");
    } catch (e) {
      status.textContent = "Could not load the dead letters.";
      ctx.fail(e);
    }
  }

  function card(d) {
    const actions = h("div", { class: "actions" },
      h("button", { type: "button", class: "replay", "aria-label": "Replay message " + d.messageId, onclick: () => replay(d) }, "Replay"),
      canDelete ? h("button", { type: "button", class: "danger delete", "aria-label": "Delete dead letter of message " + d.messageId, onclick: () => remove(d) }, "Delete") : null);
    return h("article", { class: "card deadletter", "data-id": d.id, "data-message": d.messageId },
      h("h2", null, d.messageId || d.id),
      h("dl", { class: "facts wide" },
        fact("Listener", d.listener), fact("From", d.destination), fact("Dead-letter queue", d.deadLetterDestination),
        fact("Attempts", d.attempts), fact("Failed", when(d.failedAt)), fact("Agent", d.agent),
        fact("Kept until", d.expiresAt ? when(d.expiresAt) : "forever")),
      h("pre", { class: "error-text" }, withLocations(d.error || "")),
      h("p", null, h("a", { href: "/console/runs?messageId=" + encodeURIComponent(d.messageId), "data-nav": true }, "Every run of this message")),
      h("details", null, h("summary", null, "Body and headers"),
        h("pre", { class: "result" }, d.body || ""),
        h("pre", { class: "result" }, JSON.stringify(d.headers || {}, null, 2))),
      actions);
  }

  async function replay(d) {
    const ok = await confirmAction("Replay this message?",
      "Message " + d.messageId + " is sent again to " + d.destination + " and leaves the dead letters.", "Replay");
    if (!ok) return;
    try {
      await api("POST", "/deadletters/" + seg(d.id) + "/replay");
      status.textContent = "Replayed " + d.messageId + " to " + d.destination + ".";
      await load();
      status.textContent = "Replayed " + d.messageId + " to " + d.destination + ". " + status.textContent;
    } catch (e) {
      ctx.fail(e);
    }
  }

  async function remove(d) {
    const ok = await confirmAction("Delete this dead letter?",
      "The dead letter of message " + d.messageId + " is deleted; it can no longer be replayed.", "Delete");
    if (!ok) return;
    try {
      await api("DELETE", "/deadletters/" + seg(d.id));
      await load();
      status.textContent = "Deleted the dead letter of " + d.messageId + ". " + status.textContent;
    } catch (e) {
      ctx.fail(e);
    }
  }

  load();
}

// probeDelete reports whether the API has GET|DELETE /deadletters/{id}
// (an API without them answers 404 "no route").
async function probeDelete(id) {
  try {
    await api("GET", "/deadletters/" + seg(id));
    return true;
  } catch {
    return false;
  }
}

function fact(label, value) {
  if (value === undefined || value === null || value === "") return null;
  return h("div", null, h("dt", null, label), h("dd", null, String(value)));
}
