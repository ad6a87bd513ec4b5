// onSuccess of "Validate Order": reads the chain variables it set.
/**
 * @param {opsrunner.WebhookEvent} event
 * @param {opsrunner.Context} ctx
 */
function handle(event, ctx) {
  log.info("recorded order " + Get("orderId") + " for " + Get("customer") + ", total " + Get("total"));
}
