// Variation 3: the script decides when to commit or roll back, by running
// the acknowledge operations itself (the listener's ackMode is explicit).
/**
 * @param {opsrunner.MessageEvent} event
 * @param {opsrunner.ListenerContext} ctx
 */
function handle(event, ctx) {
  var order;
  try {
    order = typeof event.body === "string" ? JSON.parse(event.body) : event.body;
  } catch (e) {
    order = null;
  }
  if (!order || !order.id || !(order.qty > 0)) {
    log.warn("bad order in " + event.messageId + ": rolling back");
    RunOperation("<TAG>Operations/3. JMS Acknowledge (Rollback)</TAG>", true);
    return { committed: false };
  }
  Set("orderId", order.id);
  log.info("order " + order.id + " accepted");
  RunOperation("<TAG>Operations/4. JMS Acknowledge (Commit)</TAG>", true);
  return { committed: true, orderId: order.id };
}
