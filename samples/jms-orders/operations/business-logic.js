// The work done with the message data; its event is the order. Throwing
// makes the caller fail, which rolls the message back.
/**
 * @param {{id: string, qty: number} | null | undefined} order the order jms-listen.js passes
 * @param {opsrunner.ListenerContext} ctx
 */
function handle(order, ctx) {
  if (!order || !order.id) {
    RaiseError("order without id");
  }
  if (!(order.qty > 0)) {
    RaiseError("order " + order.id + ": qty must be positive");
  }
  log.info("processed order " + order.id + " x" + order.qty);
  return { orderId: order.id, processed: true };
}
