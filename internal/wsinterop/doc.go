// Package wsinterop holds the interoperability test of the embedded
// broker's STOMP over WebSocket with the npm client @stomp/stompjs under
// Node; the client and its pinned dependencies are in testdata.
package wsinterop
