// The management API client: every call goes to this origin's /api/v1 with
// the token the user entered (sessionStorage, this tab only) as a bearer
// header. Errors become ApiError with the API's {code, message, details};
// a 401 or 403 also raises the "opsrunner:auth" event so the page can ask
// for a token.

const KEY = "opsrunner.token";

export const token = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (v) => (v ? sessionStorage.setItem(KEY, v) : sessionStorage.removeItem(KEY)),
};

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

// api calls method path (under /api/v1). opts.json sends a JSON body;
// opts.body with opts.contentType sends raw bytes. It resolves to the
// parsed JSON answer (null when empty).
export async function api(method, path, opts = {}) {
  const headers = { Accept: "application/json" };
  const t = token.get();
  if (t) headers.Authorization = "Bearer " + t;
  let body;
  if (opts.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(opts.json);
  } else if (opts.body !== undefined) {
    headers["Content-Type"] = opts.contentType || "application/octet-stream";
    body = opts.body;
  }
  let res;
  try {
    res = await fetch("/api/v1" + path, { method, headers, body, cache: "no-store", credentials: "omit" });
  } catch (e) {
    throw new ApiError(0, "network", "cannot reach the agent (" + e.message + ")");
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const e = (data && data.error) || {};
    const err = new ApiError(res.status, e.code || "http_" + res.status,
      e.message || text.trim() || res.statusText || "HTTP " + res.status, e.details);
    if (res.status === 401 || res.status === 403) {
      document.dispatchEvent(new CustomEvent("opsrunner:auth", { detail: err }));
    }
    throw err;
  }
  return data;
}

// seg escapes one path segment (listener ids hold a slash; operation
// names hold spaces and punctuation).
export const seg = encodeURIComponent;

// query builds "?a=b&…" from the non-empty values of obj ("" when none).
export function query(obj) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(obj)) if (v) p.set(k, v);
  const s = p.toString();
  return s ? "?" + s : "";
}

// location formats a deploy problem's place as file:line:col.
export function location(d) {
  if (!d || !d.file) return "";
  let s = d.file;
  if (d.line) s += ":" + d.line + (d.column ? ":" + d.column : "");
  return s;
}
