// Small DOM helpers. Text always goes in as text nodes, never as HTML, so
// nothing the API returns can become markup.

// h builds an element: h("button", {type: "button", onclick: f}, "Save").
// Attributes: on* add listeners; value/checked/disabled/hidden set the
// property; false, null and undefined are left out; true is an empty
// attribute. Children: strings, nodes, arrays of them; null is skipped.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") {
      el.addEventListener(k.slice(2), v);
    } else if (k === "value" || k === "checked" || k === "disabled" || k === "hidden") {
      el[k] = v;
    } else {
      el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

// when formats an ISO time as local date and time; "" for none.
export function when(iso) {
  if (!iso || iso.startsWith("0001-")) return "";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}

// ago says how long before now an ISO time was ("12s ago").
export function ago(iso) {
  const d = new Date(iso);
  if (!iso || isNaN(d)) return "";
  let s = Math.max(0, Math.round((Date.now() - d.getTime()) / 1000));
  if (s < 60) return s + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m ago";
  if (s < 86400) return Math.floor(s / 3600) + "h ago";
  return Math.floor(s / 86400) + "d ago";
}

// withLocations renders text with each "file.js:line:col" (or
// "opsrunner.yaml:line:col") marked, so script errors stand out.
export function withLocations(text) {
  const out = [];
  const re = /[\w./-]+\.(?:js|ya?ml|json):\d+(?::\d+)?/g;
  let last = 0;
  for (const m of String(text).matchAll(re)) {
    out.push(text.slice(last, m.index), h("mark", { class: "loc" }, m[0]));
    last = m.index + m[0].length;
  }
  out.push(String(text).slice(last));
  return out;
}

// badge shows a status or outcome as a coloured label.
export function badge(value) {
  if (!value) return "";
  return h("span", { class: "badge b-" + value.replace(/[^a-z_]/gi, "") }, value.replace(/_/g, " "));
}

// confirmAction asks in a modal dialog; it resolves true when the user
// presses the action button, false on Cancel or Escape.
export function confirmAction(title, text, actionLabel) {
  return confirmDialog(title, text, actionLabel, null);
}

// confirmTyped is confirmAction for what cannot be undone: the action
// button stays disabled until the user has typed expected (a project's
// name) into the dialog's field.
export function confirmTyped(title, text, expected, actionLabel) {
  return confirmDialog(title, text, actionLabel, expected);
}

function confirmDialog(title, text, actionLabel, expected) {
  return new Promise((resolve) => {
    const ok = h("button", { type: "button", class: "danger", value: "ok", disabled: expected !== null }, actionLabel);
    const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
    let typed = null;
    if (expected !== null) {
      typed = h("input", { id: "confirm-typed", type: "text", autocomplete: "off", spellcheck: "false" });
      typed.addEventListener("input", () => { ok.disabled = typed.value !== expected; });
      typed.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && !ok.disabled) ok.click(); });
    }
    const dlg = h("dialog", { class: "confirm", "aria-labelledby": "confirm-title" },
      h("h2", { id: "confirm-title" }, title), h("p", null, text),
      typed ? h("div", { class: "field" },
        h("label", { for: "confirm-typed" }, "Type ", h("strong", null, expected), " to confirm"), typed) : null,
      h("div", { class: "actions" }, ok, cancel));
    let answer = false;
    ok.addEventListener("click", () => { answer = true; dlg.close(); });
    cancel.addEventListener("click", () => dlg.close());
    dlg.addEventListener("close", () => { dlg.remove(); resolve(answer); });
    document.body.append(dlg);
    dlg.showModal();
    (typed || cancel).focus();
  });
}

// copyButton copies text to the clipboard and says so ("Copied"). Where
// the clipboard cannot be written (no permission, an insecure origin) it
// selects the text of target instead, for the user to copy with Ctrl+C
// (and tries the older copy command on the selection). The outcome stays
// in data-state: "copied" or "selected".
export function copyButton(text, label, target) {
  const b = h("button", { type: "button", class: "secondary small copy", "aria-label": label }, "Copy");
  let timer = 0;
  b.addEventListener("click", async () => {
    let copied = false;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
        copied = true;
      }
    } catch {
      copied = false;
    }
    if (!copied && target) {
      selectText(target);
      try {
        copied = document.execCommand("copy");
      } catch {
        copied = false;
      }
    }
    b.dataset.state = copied ? "copied" : "selected";
    b.textContent = copied ? "Copied" : "Selected: press Ctrl+C";
    clearTimeout(timer);
    timer = setTimeout(() => { b.textContent = "Copy"; }, 2000);
  });
  return b;
}

// selectText selects the text of el, as a user's drag would.
function selectText(el) {
  const range = document.createRange();
  range.selectNodeContents(el);
  const sel = window.getSelection();
  sel.removeAllRanges();
  sel.addRange(range);
}
