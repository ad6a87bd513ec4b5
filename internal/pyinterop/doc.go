// Package pyinterop holds the interoperability test of the embedded
// broker with the Python client stomp.py, as Debian packages it
// (python3-stomp 8.0.0): a script of our own (testdata/client.py) runs
// connect, send, subscribe, ACK, NACK, transactions, a wrong login and an
// oversized frame against a broker with users.
package pyinterop
