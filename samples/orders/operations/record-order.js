// onSuccess of "Validate Order": reads the chain variables it set.
function handle(event, ctx) {
  log.info("recorded order " + Get("orderId") + " for " + Get("customer") + ", total " + Get("total"));
}
