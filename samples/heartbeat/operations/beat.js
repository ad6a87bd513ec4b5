// Publishes a heartbeat message on each tick. event.body is the schedule's
// input; event.scheduledAt is the tick's time, event.firedAt when it ran.
/**
 * @param {opsrunner.ScheduleEvent} event
 * @param {opsrunner.Context} ctx
 */
function handle(event, ctx) {
  var beat = {
    service: event.body.service,
    schedule: event.schedule,
    scheduledAt: event.scheduledAt,
    firedAt: event.firedAt,
  };
  SendMessage(event.body.destination, beat);
  log.info("heartbeat " + event.scheduledAt);
  return beat;
}
