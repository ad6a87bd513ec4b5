// The error handling docs/typescript.md shows; it must type-check.

/**
 * @param {{id?: string, items: {sku: string, qty: number}[]} | null} order
 * @param {opsrunner.Context} ctx
 */
function handle(order, ctx) {
  if (!order || !order.id) RaiseError("order without id");
  Set("orderId", order.id);
  try {
    RunOperation("Check Stock", true, order);
  } catch (/** @type {any} */ e) {
    log.warn(e.operation, e.status, e.message);
  }
  return { id: order.id.toUpperCase(), by: ctx.trigger };
}
