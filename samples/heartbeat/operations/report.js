// A weekday report. A catch-up run (the agent was down at 07:30) has a
// scheduledAt well before its firedAt.
/**
 * @param {opsrunner.ScheduleEvent} event
 * @param {opsrunner.Context} ctx
 */
function handle(event, ctx) {
  var late = (Date.parse(event.firedAt) - Date.parse(event.scheduledAt)) / 1000;
  log.info("report for " + event.scheduledAt + (late > 60 ? " (caught up " + Math.round(late) + "s late)" : ""));
  return { reportFor: event.scheduledAt };
}
