// Answers POST /hooks/{{project}}/hello with {message: "hello, <name>"}.
// The types come from opsrunner.d.ts (see jsconfig.json): an editor
// completes event, ctx and the globals (log, fetch, RunOperation and the
// rest) and flags mistakes; `npx -p typescript tsc -p jsconfig.json`
// checks the same.

/**
 * @param {opsrunner.WebhookEvent} event the request; body is parsed when it is JSON
 * @param {opsrunner.Context} ctx the run: ctx.run, ctx.project, ctx.operation
 * @returns {opsrunner.WebhookResponse}
 */
function handle(event, ctx) {
  const name = (event.body && typeof event.body.name === "string" && event.body.name) || "world";
  log.info("run", ctx.run, "greets", name);
  return { status: 200, body: { message: "hello, " + name } };
}
