// "2. Business Logic": the work done with the message's data, run once
// "1. JMS Listen" succeeded. The processed order it publishes joins the
// message's transaction: when this operation succeeds, its onSuccess
// commits the message and the order is published with the commit; when it
// fails, its onFailure rolls the message back and the order is discarded.

/**
 * @param {opsrunner.MessageEvent} event the same message as "1. JMS Listen"
 * @param {opsrunner.ListenerContext} ctx
 */
function handle(event, ctx) {
  var order = event.body;
  if (!(order.qty > 0)) {
    RaiseError("order " + order.id + ": qty must be positive");
  }
  SendMessage("/queue/orders.v2.processed", { id: order.id, qty: order.qty, messageId: Get("messageId") }, { persistent: true });
  log.info("processed order " + Get("orderId") + " x" + order.qty + " (attempt " + event.deliveryCount + ")");
}
