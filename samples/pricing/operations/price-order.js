// Prices an order with the pricing service and answers the priced order:
// a unit price and an amount per line, and a total. A malformed order is a
// 400. A pricing service that is unreachable, slow or answers an error
// fails the run with an error saying which (the caller gets a 500 naming
// the run; the run history keeps the error).

/**
 * An order as the webhook receives it, once checkOrder() found nothing wrong.
 * @typedef {{id: string, customer?: string, items: {sku: string, qty: number}[]}} Order
 */

/** @param {opsrunner.WebhookEvent} event */
async function handle(event) {
  /** @type {Order} */
  const order = event.body;
  const problem = checkOrder(order);
  if (problem) {
    return { status: 400, body: { error: problem } };
  }
  const quote = await requestQuote(order);
  let totalCents = 0;
  const items = order.items.map((item) => {
    const unitPrice = quote.prices[item.sku];
    if (typeof unitPrice !== "number") {
      throw new Error(`pricing order ${order.id}: the pricing service has no price for ${item.sku}`);
    }
    const cents = Math.round(unitPrice * 100) * item.qty;
    totalCents += cents;
    return { sku: item.sku, qty: item.qty, unitPrice, amount: cents / 100 };
  });
  log.info("priced order", order.id, "at", totalCents / 100, quote.currency);
  return { id: order.id, customer: order.customer, currency: quote.currency, items, total: totalCents / 100 };
}

// checkOrder says what is wrong with an order, or "" when nothing is.
/** @param {any} order the request body, as received */
function checkOrder(order) {
  if (!order || typeof order.id !== "string" || order.id === "") {
    return "an order needs an id";
  }
  if (!Array.isArray(order.items) || order.items.length === 0) {
    return `order ${order.id} has no items`;
  }
  for (const item of order.items) {
    if (!item || typeof item.sku !== "string" || !Number.isInteger(item.qty) || item.qty < 1) {
      return `order ${order.id}: each item needs a sku and a whole qty of at least 1`;
    }
  }
  return "";
}

// requestQuote asks the pricing service for the prices of the order's
// items. The API key is a project secret: opsrunner redacts its value from
// the run's logs and errors, and it never appears in the bundle.
/**
 * @param {Order} order
 * @returns {Promise<{currency: string, prices: Record<string, number | undefined>}>}
 */
async function requestQuote(order) {
  const key = secrets.PRICING_KEY;
  if (key === undefined) {
    throw new Error("the secret PRICING_KEY is not set: opsrunner secrets set pricing PRICING_KEY");
  }
  let resp;
  try {
    resp = await fetch(env.PRICING_URL + "/v1/quotes", {
      method: "POST",
      headers: { Authorization: "Bearer " + key, "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ items: order.items.map((i) => ({ sku: i.sku, qty: i.qty })) }),
      timeout: Number(env.PRICING_TIMEOUT_MS) || 3000,
    });
  } catch (/** @type {any} */ e) {
    // A TimeoutError when the service is slow; a TypeError naming the host
    // when it cannot be reached (refused, DNS, TLS, not in egress).
    const what = e.name === "TimeoutError" ? "did not answer in time" : "could not be reached";
    throw new Error(`pricing order ${order.id}: the pricing service ${what}: ${e.message}`);
  }
  if (!resp.ok) {
    throw new Error(`pricing order ${order.id}: the pricing service answered ${resp.status} ${resp.statusText}`);
  }
  return resp.json();
}
