// Webhook helper for trying the listeners: puts the request body on a queue
// (?queue=/queue/orders.v3 picks the variation 3 queue; default /queue/orders).
/**
 * @param {opsrunner.WebhookEvent} event
 * @param {opsrunner.Context} ctx
 */
function handle(event, ctx) {
  var q = (event.query && event.query.queue) || "/queue/orders";
  if (Array.isArray(q)) {
    q = q[0];
  }
  if (q !== "/queue/orders" && q !== "/queue/orders.v3") {
    return { status: 400, body: { error: "queue must be /queue/orders or /queue/orders.v3" } };
  }
  SendMessage(q, JSON.stringify(event.body), { headers: { "content-type": "application/json" }, persistent: true });
  return { status: 202, body: { queued: q } };
}
