// The console's shell: routes /console/{page} to a page module, keeps the
// navigation, the notice line and the token dialog. Each page's render
// returns a function that stops it (its polling), called on leaving it.
import { h } from "./dom.js";
import { token } from "./api.js";
import * as listeners from "./listeners.js";
import * as runs from "./runs.js";
import * as run from "./run.js";
import * as deadletters from "./deadletters.js";
import * as projects from "./projects.js";
import * as cluster from "./cluster.js";

const routes = [
  [/^\/(?:console\/?)?$/, listeners, "listeners"],
  [/^\/console\/listeners\/?$/, listeners, "listeners"],
  [/^\/console\/runs\/?$/, runs, "runs"],
  [/^\/console\/runs\/([^/]+)$/, run, "runs"],
  [/^\/console\/deadletters\/?$/, deadletters, "deadletters"],
  [/^\/console\/projects\/?$/, projects, "projects"],
  [/^\/console\/cluster\/?$/, cluster, "cluster"],
];

const main = document.getElementById("main");
const notice = document.getElementById("notice");
let stop = null;

// fail shows an error in the notice line; a 401/403 offers the token dialog.
function fail(err) {
  notice.replaceChildren();
  notice.hidden = false;
  notice.className = "notice error";
  const status = err.status ? err.status + " " + (err.code || "") + ": " : "";
  notice.append(h("span", null, status + err.message));
  if (err.status === 401 || err.status === 403) {
    notice.append(" ", h("span", null, err.status === 401
      ? "This agent needs an API token."
      : "Your token lacks the scope this needs."),
    " ", h("button", { type: "button", onclick: openToken }, "Enter token"));
  }
  notice.append(" ", h("button", { type: "button", class: "secondary small", "aria-label": "Dismiss", onclick: clearNotice }, "×"));
}

function clearNotice() {
  notice.hidden = true;
  notice.replaceChildren();
}

// go shows the page for a path (pushing it onto the history unless replace).
function go(path, replace) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  render();
}

function render() {
  if (stop) stop();
  stop = null;
  clearNotice();
  const path = location.pathname;
  let found = null;
  for (const [re, page, nav] of routes) {
    const m = path.match(re);
    if (m) {
      found = { page, nav, params: m.slice(1).map(decodeURIComponent) };
      break;
    }
  }
  for (const a of document.querySelectorAll("nav a[data-page]")) {
    if (found && a.dataset.page === found.nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  main.replaceChildren();
  if (!found) {
    main.append(h("h1", null, "Not found"), h("p", null, "The console has no page " + path + ". "),
      h("a", { href: "/console/listeners", "data-nav": true }, "Go to Listeners"));
    return;
  }
  const ctx = { params: found.params, search: new URLSearchParams(location.search), fail, clearNotice, go };
  stop = found.page.render(main, ctx) || null;
}

// Links marked data-nav (and any link to /console/) change page without a reload.
document.addEventListener("click", (ev) => {
  const a = ev.target.closest && ev.target.closest("a[href]");
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith("/console")) return;
  ev.preventDefault();
  go(url.pathname + url.search);
  main.focus({ preventScroll: true });
});
window.addEventListener("popstate", render);

// The token dialog.
const dialog = document.getElementById("token-dialog");
const input = document.getElementById("token-input");
function openToken() {
  input.value = token.get();
  dialog.showModal();
  input.focus();
}
document.getElementById("token-button").addEventListener("click", openToken);
document.getElementById("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token.set(input.value.trim());
  dialog.close();
  showTokenState();
  render();
});
document.getElementById("token-forget").addEventListener("click", () => {
  token.set("");
  dialog.close();
  showTokenState();
  render();
});
document.getElementById("token-cancel").addEventListener("click", () => dialog.close());
document.addEventListener("opsrunner:auth", (ev) => fail(ev.detail));

function showTokenState() {
  const b = document.getElementById("token-button");
  b.textContent = token.get() ? "Token ✓" : "Token";
  b.setAttribute("aria-label", token.get() ? "API token (set)" : "API token (none)");
}

showTokenState();
render();
