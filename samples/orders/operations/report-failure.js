// onFailure of "Validate Order": GetLastError() is why it failed.
/**
 * @param {opsrunner.WebhookEvent} event
 * @param {opsrunner.Context} ctx
 */
function handle(event, ctx) {
  log.error("order " + (Get("orderId") || "(unknown)") + " refused: " + GetLastError());
}
