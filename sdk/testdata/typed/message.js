// A listener operation deciding itself; it must type-check.

/**
 * @param {opsrunner.MessageEvent} event
 * @param {opsrunner.ListenerContext} ctx
 */
function handle(event, ctx) {
  const region = event.properties.JMS_PROP_region;
  log.info(event.messageId, event.destination, event.deliveryCount, event.redelivered, event.properties.JMS_MSG_PRIORITY, region);
  SendMessage("/queue/out", { id: event.body.id }, { persistent: true, priority: 4, headers: { region: region }, ackTimeout: 30 });
  if (event.body.bad) {
    ctx.message.rollback("bad order");
    return;
  }
  if (event.deliveryCount > 3) {
    Acknowledge("JBXRollback", event.messageId);
    RaiseError("too many attempts");
  }
  ctx.message.commit();
}

/** @type {opsrunner.Filter} */
function filter(event, ctx) {
  return event.headers["x-kind"] === "order" && ctx.trigger === "listener";
}
