// Answers {message: "hello, <name>"}; event.body is the parsed JSON body.
function handle(event, ctx) {
  return { message: "hello, " + (event.body && event.body.name || "world") };
}
