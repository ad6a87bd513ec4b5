// A webhook operation using most of the API; it must type-check.

/**
 * @param {opsrunner.WebhookEvent} event
 * @param {opsrunner.Context} ctx
 * @returns {Promise<opsrunner.WebhookResponse>}
 */
async function handle(event, ctx) {
  const name = event.query.name;
  log.info("run", ctx.run, "of", ctx.project, ctx.operation, "by", ctx.trigger, event.method, event.path);
  console.log(event.headers["content-type"], event.rawBody.length, Array.isArray(name));
  Set("seen", true);
  $vars.count = (Get("count") || 0) + 1;
  const seen = new Set([1, 2]);
  seen.add(3);
  const ctl = new AbortController();
  const t = setTimeout((n) => ctl.abort(new Error("late " + n)), 5000, 1);
  /** @type {Response} */
  let resp;
  try {
    resp = await fetch(env.API_BASE + "/v1", {
      method: "POST",
      headers: new Headers({ authorization: "Bearer " + secrets.API_KEY }),
      body: JSON.stringify(event.body),
      signal: ctl.signal,
      timeout: 2000,
      redirect: "error",
    });
  } catch (e) {
    const err = /** @type {Error} */ (e);
    return { status: 502, body: { error: err.name + ": " + err.message } };
  } finally {
    clearTimeout(t);
  }
  await sleep(1);
  const queued = RunOperation("Audit", false, { status: resp.status });
  try {
    RunOperation("<TAG>Operations/Check</TAG>");
  } catch (e) {
    const failed = /** @type {opsrunner.OperationError} */ (e);
    log.warn(failed.operation, failed.status, GetLastError());
  }
  const signal = AbortSignal.timeout(10);
  signal.throwIfAborted();
  return { status: resp.ok ? 200 : 502, headers: { "x-run": queued }, body: await resp.json() };
}
