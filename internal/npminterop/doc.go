// Package npminterop holds the interoperability test of the embedded
// broker over TCP with the npm STOMP client stompit under Node; the client
// and its pinned dependencies are in testdata, installed with npm ci at
// test time.
package npminterop
