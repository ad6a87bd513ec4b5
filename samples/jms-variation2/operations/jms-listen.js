// "1. JMS Listen", the listener's operation: it checks that the message is
// an order and keeps the order's and the message's ids in the chain's
// variables. If it fails, its onFailure rolls the message back; if it
// succeeds, the chain goes on to "2. Business Logic" with the same message.

/**
 * @param {opsrunner.MessageEvent} event
 * @param {opsrunner.ListenerContext} ctx
 */
function handle(event, ctx) {
  log.info("received " + event.messageId + " (attempt " + event.deliveryCount + ") on " + event.destination);
  var order = event.body;
  if (!order || typeof order !== "object" || typeof order.id !== "string") {
    RaiseError("message " + event.messageId + " is not an order: " + JSON.stringify(order));
  }
  Set("orderId", order.id);
  Set("messageId", ctx.message.id);
}
