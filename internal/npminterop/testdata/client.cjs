// Interoperability client for the embedded broker over TCP, with the npm
// client stompit. Usage: node client.cjs HOST PORT LOGIN PASSCODE roundtrip|wrong-login
// It prints one JSON line of what it saw and exits 0 when the case held.
'use strict';
const stompit = require('stompit');

const [host, port, login, passcode, mode] = process.argv.slice(2);
const dest = '/queue/npm.interop';

function finish(code, result) {
  console.log(JSON.stringify(result));
  process.exit(code);
}
setTimeout(() => finish(2, { error: 'timed out after 15s' }), 15000).unref();

const options = {
  host,
  port: Number(port),
  connectHeaders: { host: 'opsrunner', login, passcode, 'heart-beat': '0,0', 'accept-version': '1.2' },
};

stompit.connect(options, (err, client) => {
  if (mode === 'wrong-login') {
    if (err) {
      finish(err.message.includes('access refused') ? 0 : 1, { connectError: err.message });
    }
    client.disconnect();
    finish(1, { error: 'connected with a wrong passcode' });
  }
  if (err) {
    finish(1, { connectError: err.message });
  }
  client.on('error', (e) => finish(1, { error: e.message }));
  client.subscribe({ destination: dest, ack: 'client-individual' }, (err, message) => {
    if (err) {
      finish(1, { error: err.message });
    }
    message.readString('utf-8', (err, body) => {
      if (err) {
        finish(1, { error: err.message });
      }
      const result = { body, colour: message.headers.colour };
      client.ack(message);
      client.disconnect((err) => { // waits for the DISCONNECT's receipt: the ACK was applied
        if (err) {
          finish(1, { error: err.message });
        }
        finish(body === 'hello from stompit' ? 0 : 1, result);
      });
    });
  });
  const frame = client.send({ destination: dest, 'content-type': 'text/plain', colour: 'blue' });
  frame.write('hello from stompit');
  frame.end();
});
