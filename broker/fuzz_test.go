package broker

import (
	"io"
	"net"
	"testing"
	"time"
)

// FuzzFrames feeds arbitrary bytes to a broker connection: the broker must
// never panic, and must answer and release the connection promptly.
func FuzzFrames(f *testing.F) {
	const hello = "CONNECT\naccept-version:1.0,1.1,1.2\nheart-beat:0,0\n\n\x00"
	for _, s := range []string{
		"",
		hello,
		hello + "SEND\ndestination:/queue/a\npersistent:true\nreceipt:1\n\nhello\x00",
		hello + "SEND\ndestination:/queue/a\ncontent-length:3\n\na\x00b\x00",
		hello + "SUBSCRIBE\nid:1\ndestination:/queue/a\nack:client\nselector:a > 1 OR b LIKE 'x%'\n\n\x00" +
			"SEND\ndestination:/queue/a\na:2\n\nx\x00ACK\nid:1\n\n\x00NACK\nid:1\n\n\x00",
		hello + "BEGIN\ntransaction:t\n\n\x00SEND\ndestination:/topic/t\ntransaction:t\n\n\x00COMMIT\ntransaction:t\n\n\x00",
		hello + "SUBSCRIBE\nid:d\ndestination:/topic/t\ndurable:true\n\n\x00UNSUBSCRIBE\nid:d\ndurable:true\n\n\x00",
		"STOMP\n\n\x00\n\n\r\nDISCONNECT\nreceipt:9\n\n\x00",
		hello + "SEND\ndestination:/queue/a\ncontent-length:99999999\n\n",
		hello + "SEND\ndestination:/queue/a\nh:\\c\\n\\\\\n\n\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(fuzzFrame)
}

func fuzzFrame(t *testing.T, data []byte) {
	{
		b, err := New(Config{MaxFrameBytes: 64 << 10, HeartBeat: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		client, server := net.Pipe()
		b.ServeConn(server)
		written := make(chan struct{})
		go func() {
			defer close(written)
			_, _ = client.Write(data) // a pipe: returns once the broker read it all, or on close
		}()
		// Read whatever the broker answers until it stops talking: it closes
		// the connection, or says nothing for 10 ms after it has read every
		// byte (a fixed 100 ms wait made fuzzing crawl at a few execs/s).
		go func() {
			select {
			case <-written:
			case <-time.After(time.Second):
			}
			_ = client.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		}()
		_, _ = io.Copy(io.Discard, client)
		_ = client.Close()
		<-written
		done := make(chan struct{})
		go func() { _ = b.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("broker did not close within 5s")
		}
	}
}
