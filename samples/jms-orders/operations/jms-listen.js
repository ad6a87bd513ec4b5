// Variation 1: the listener's operation. It hands the message to the
// business logic; if that throws, this operation fails and the chain's
// onFailure rolls the message back (redelivered, dead-lettered after 3
// attempts). On success the chain's onSuccess commits it.
/**
 * @param {opsrunner.MessageEvent} event
 * @param {opsrunner.ListenerContext} ctx
 */
function handle(event, ctx) {
  var order = typeof event.body === "string" ? JSON.parse(event.body) : event.body;
  log.info("received " + event.messageId + " (attempt " + event.deliveryCount + ") on " + event.destination);
  Set("orderId", order && order.id);
  return RunOperation("<TAG>Operations/2. Business Logic</TAG>", true, order);
}
