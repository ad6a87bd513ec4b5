// Validates the order in the webhook body, prices it through another
// operation and answers {orderId, total, status}.
/**
 * @param {opsrunner.WebhookEvent} event
 * @param {opsrunner.Context} ctx
 */
function handle(event, ctx) {
  var order = event.body;
  if (!order || typeof order !== "object") {
    RaiseError("the body must be a JSON order");
  }
  var missing = ["id", "customer", "items"].filter(function (k) { return order[k] === undefined; });
  if (missing.length > 0) {
    RaiseError("order is missing: " + missing.join(", "));
  }
  if (!Array.isArray(order.items) || order.items.length === 0) {
    RaiseError("order has no items");
  }

  Set("orderId", order.id);
  Set("customer", order.customer);
  $vars.items = order.items;

  // Runs "Price Order" in this chain (same variables) and waits for its result.
  var priced = RunOperation("<TAG>Operations/Price Order</TAG>", true);
  return { orderId: Get("orderId"), total: priced.total, status: "accepted" };
}
