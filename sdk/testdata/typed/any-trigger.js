// One operation for every trigger: opsrunner.Event narrows with `in` and
// the schedule event's trigger.

/** @type {opsrunner.Handler} */
module.exports = function (event, ctx) {
  if ("messageId" in event) {
    return { message: event.messageId, commit: ctx.message !== undefined };
  }
  if ("method" in event) {
    return { status: 200, body: event.method };
  }
  if (event.trigger === "schedule") {
    return { tick: event.schedule, at: event.scheduledAt, fired: event.firedAt, input: event.body };
  }
  return event;
};
