#!/usr/bin/env python3
"""Interoperability client: stomp.py (Debian's python3-stomp 8.0.0) against
opsrunner's embedded broker. pyinterop_test.go runs it as

    client.py HOST PORT LOGIN PASSCODE CASE [DESTINATION]

and reads the one JSON object it prints last. A case that goes wrong in a
way the Go test cannot see prints {"fail": "..."}; a crash exits non-zero.
"""

import json
import queue
import sys
import threading

import stomp
from stomp.exception import ConnectFailedException

TIMEOUT = 10  # seconds to wait for any one frame


class Recorder(stomp.ConnectionListener):
    """Keeps every frame the broker sends, for the case to wait on."""

    def __init__(self):
        self.messages = queue.Queue()
        self.errors = queue.Queue()
        self.receipts = queue.Queue()
        self.disconnected = threading.Event()
        self.connected = {}  # the CONNECTED frame's headers

    def on_connected(self, frame):
        self.connected = dict(frame.headers)

    def on_message(self, frame):
        self.messages.put(frame)

    def on_error(self, frame):
        self.errors.put(frame)

    def on_receipt(self, frame):
        self.receipts.put(frame.headers.get("receipt-id"))

    def on_disconnected(self):
        self.disconnected.set()


def connection(host, port):
    conn = stomp.Connection12([(host, port)], heartbeats=(0, 0), reconnect_attempts_max=1)
    rec = Recorder()
    conn.set_listener("rec", rec)
    return conn, rec


def connect(host, port, login, passcode):
    conn, rec = connection(host, port)
    conn.connect(login, passcode, wait=True)
    return conn, rec


def next_message(rec):
    return rec.messages.get(timeout=TIMEOUT)


def send_applied(conn, rec, dest, body, receipt, **kw):
    """Sends with a receipt and waits for it: the broker has applied it."""
    conn.send(dest, body, receipt=receipt, **kw)
    got = rec.receipts.get(timeout=TIMEOUT)
    if got != receipt:
        raise AssertionError("receipt %r, want %r" % (got, receipt))


def error_message(rec):
    """The message header of the next ERROR frame, or None within TIMEOUT."""
    try:
        return rec.errors.get(timeout=TIMEOUT).headers.get("message")
    except queue.Empty:
        return None


def case_roundtrip(host, port, login, passcode, dest):
    conn, rec = connect(host, port, login, passcode)
    conn.subscribe(dest, id="1", ack="client-individual")
    conn.send(dest, "hello from stomp.py", headers={"colour": "blue"})
    m = next_message(rec)
    conn.ack(m.headers["ack"])
    conn.disconnect(receipt="bye")  # waits for the receipt: the ACK was applied
    return {"version": rec.connected.get("version"), "server": rec.connected.get("server"), "body": m.body, "colour": m.headers.get("colour"),
            "ack": bool(m.headers.get("ack"))}


def case_nack(host, port, login, passcode, dest):
    conn, rec = connect(host, port, login, passcode)
    conn.subscribe(dest, id="1", ack="client-individual")
    conn.send(dest, "nack me")
    first = next_message(rec)
    conn.nack(first.headers["ack"])
    again = next_message(rec)
    conn.ack(again.headers["ack"])
    conn.disconnect(receipt="bye")
    return {"body": again.body, "redelivered": again.headers.get("redelivered"),
            "sameMessageId": again.headers["message-id"] == first.headers["message-id"]}


def case_transactions(host, port, login, passcode, dest):
    conn, rec = connect(host, port, login, passcode)
    conn.subscribe(dest, id="1", ack="auto")
    tx = conn.begin()
    conn.send(dest, "a", transaction=tx)
    conn.send(dest, "b", transaction=tx)
    # Sent outside the transaction and applied before its COMMIT: it
    # arrives first if the transaction's sends waited for the commit.
    send_applied(conn, rec, dest, "outside", "outside")
    conn.commit(tx)
    order = [next_message(rec).body for _ in range(3)]
    tx = conn.begin()
    conn.send(dest, "aborted", transaction=tx)
    conn.abort(tx)
    send_applied(conn, rec, dest, "after abort", "after")
    after = next_message(rec).body
    conn.disconnect(receipt="bye")
    return {"order": order, "afterAbort": after}


def case_wrong_login_wait(host, port, login, passcode, dest):
    conn, rec = connection(host, port)
    try:
        conn.connect(login, passcode, wait=True)
    except ConnectFailedException:
        return {"exception": "ConnectFailedException", "error": error_message(rec)}
    return {"fail": "connected with a wrong login"}


def case_wrong_login_nowait(host, port, login, passcode, dest):
    # upstream's test_connect_nowait_error, waiting for the broker's answer
    conn, rec = connection(host, port)
    conn.connect(login, passcode, wait=False)
    err = error_message(rec)
    rec.disconnected.wait(TIMEOUT)
    return {"connected": conn.is_connected(), "error": err}


def case_denied(host, port, login, passcode, dest):
    conn, rec = connect(host, port, login, passcode)
    conn.send(dest, "not allowed here")
    err = error_message(rec)
    rec.disconnected.wait(TIMEOUT)
    return {"error": err, "connected": conn.is_connected()}


def case_oversized(host, port, login, passcode, dest):
    # 8 MiB: larger than any frame the test's broker takes, and than what
    # the sockets' buffers hold, so the broker answers while we still write.
    conn, rec = connect(host, port, login, passcode)
    send_error = ""
    try:
        conn.send(dest, "x" * (8 << 20))
    except Exception as e:  # a reset while writing would show here
        send_error = repr(e)
    err = error_message(rec)
    rec.disconnected.wait(TIMEOUT)
    return {"error": err, "sendError": send_error}


CASES = {
    "roundtrip": case_roundtrip,
    "nack": case_nack,
    "transactions": case_transactions,
    "wrong-login-wait": case_wrong_login_wait,
    "wrong-login-nowait": case_wrong_login_nowait,
    "denied": case_denied,
    "oversized": case_oversized,
}


def main(argv):
    host, port, login, passcode, case = argv[1:6]
    dest = argv[6] if len(argv) > 6 else "/queue/pyinterop"
    try:
        result = CASES[case](host, int(port), login, passcode, dest)
    except queue.Empty:
        result = {"fail": "no frame within %d s" % TIMEOUT}
    except Exception as e:
        result = {"fail": repr(e)}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv)
