// Answers {message: "hello, <name>"}; event.body is the parsed JSON body.
/**
 * @param {opsrunner.WebhookEvent} event
 * @param {opsrunner.Context} ctx
 */
function handle(event, ctx) {
  return { message: "hello, " + (event.body && event.body.name || "world") };
}
