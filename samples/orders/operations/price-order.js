// Prices the items the calling operation put in the chain's variables.
/**
 * @param {opsrunner.WebhookEvent} event
 * @param {opsrunner.Context} ctx
 */
function handle(event, ctx) {
  var items = $vars.items || [];
  var total = 0;
  for (var i = 0; i < items.length; i++) {
    var it = items[i];
    if (typeof it.qty !== "number" || typeof it.price !== "number") {
      RaiseError("item " + i + " needs a numeric qty and price");
    }
    total += it.qty * it.price;
  }
  total = Math.round(total * 100) / 100;
  Set("total", total);
  return { total: total };
}
