// Each line after handle's first is a mistake tsc must report (see
// tsc_test.go, which expects one error per line marked "want").

/** @param {opsrunner.WebhookEvent} event @param {opsrunner.Context} ctx */
function handle(event, ctx) {
  log.info(event.messageId); // want TS2339
  SendMessage("/queue/x", "body", { priorty: 4 }); // want TS2561
  const id = RunOperation("Other", false); id.toFixed(); // want TS2551
  ctx.message.commit(); // want TS18048
  setInterval(() => {}, 10); // want TS2304
  new URL("http://example.com"); // want TS2304
  fetch("http://example.com", { methd: "GET" }); // want TS2561
  fetch("http://example.com", { redirect: "nofollow" }); // want TS2820
}
