// Webhook helper for trying the listener: puts the request body on
// /queue/orders.v2 as JSON.

/**
 * @param {opsrunner.WebhookEvent} event
 * @param {opsrunner.Context} ctx
 */
function handle(event, ctx) {
  SendMessage("/queue/orders.v2", JSON.stringify(event.body), { headers: { "content-type": "application/json" }, persistent: true });
  return { status: 202, body: { queued: "/queue/orders.v2" } };
}
