// onFailure of "Validate Order": GetLastError() is why it failed.
function handle(event, ctx) {
  log.error("order " + (Get("orderId") || "(unknown)") + " refused: " + GetLastError());
}
