// Interoperability client for the embedded broker's STOMP over WebSocket,
// with @stomp/stompjs under Node (ws as the WebSocket, as the stompjs docs
// show for Node). Usage: node client.mjs URL LOGIN PASSCODE roundtrip|wrong-login
// It prints one JSON line of what it saw and exits 0 when the case held.
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';

const [url, login, passcode, mode] = process.argv.slice(2);
const dest = '/queue/interop';
let socket;
let disconnecting = false; // deactivate closes the socket: no failure then

function finish(code, result) {
  console.log(JSON.stringify(result));
  process.exit(code);
}
setTimeout(() => finish(2, { error: 'timed out after 15s' }), 15000).unref();

const client = new Client({
  webSocketFactory: () => {
    socket = new WebSocket(url, ['v12.stomp', 'v11.stomp', 'v10.stomp']);
    return socket;
  },
  connectHeaders: { login, passcode },
  reconnectDelay: 0,
  heartbeatIncoming: 1000,
  heartbeatOutgoing: 1000,
});

client.onConnect = (frame) => {
  if (mode === 'wrong-login') {
    finish(1, { error: 'connected with a wrong passcode' });
  }
  const result = { subprotocol: socket.protocol, version: frame.headers.version, server: frame.headers.server };
  client.subscribe(dest, async (message) => {
    result.body = message.body;
    result.deliveryCount = message.headers['delivery-count'];
    message.ack();
    disconnecting = true;
    await client.deactivate(); // DISCONNECT, waiting for its receipt
    finish(result.body === 'hello from stompjs' ? 0 : 1, result);
  }, { ack: 'client-individual' });
  client.publish({ destination: dest, body: 'hello from stompjs', headers: { 'content-type': 'text/plain' } });
};

client.onStompError = (frame) => {
  const message = frame.headers.message;
  if (mode === 'wrong-login') {
    finish(message.includes('access refused') ? 0 : 1, { stompError: message });
  }
  finish(1, { stompError: message });
};

client.onWebSocketClose = (evt) => {
  if (disconnecting) {
    return;
  }
  finish(1, { error: `websocket closed (${evt.code}) before the case ended` });
};

client.activate();
