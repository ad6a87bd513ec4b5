package broker

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
)

// expectError reads frames (skipping CONNECTED) until an ERROR whose
// message mentions want, then expects the connection to end.
func (r *rawConn) expectError(want string) *frame.Frame {
	r.t.Helper()
	f := r.read()
	if f != nil && f.Command == frame.CONNECTED {
		f = r.read()
	}
	if f == nil || f.Command != frame.ERROR {
		r.t.Fatalf("want ERROR mentioning %q, got %v", want, f)
	}
	if msg := f.Header.Get(frame.Message); !strings.Contains(msg, want) {
		r.t.Errorf("message %q does not mention %q", msg, want)
	}
	if f := r.read(); f != nil {
		r.t.Errorf("connection still open after ERROR: %v", f.Command)
	}
	return f
}

// writeAll writes s on a goroutine (the broker may answer before it has
// read it all) and returns the write's error once it is done.
func (r *rawConn) writeAll(s string) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := io.WriteString(r.nc, s)
		done <- err
	}()
	return done
}

func TestLimits(t *testing.T) {
	t.Parallel()
	b := startBroker(t, Config{
		ConnectTimeout:      300 * time.Millisecond,
		MaxFrameBytes:       64 << 10,
		MaxHeaderBytes:      1 << 10,
		MaxHeaderTotalBytes: 4 << 10,
		MaxDestinationBytes: 64,
	})
	const hello = "CONNECT\naccept-version:1.2\nhost:x\n\n\x00"
	tests := []struct {
		name, input, want string
	}{
		{"no CONNECT", "", "no CONNECT frame within 300ms"},
		{"CONNECT never finished", "CONNECT\naccept-version:1.2\n", "no CONNECT frame within"},
		{"2 MiB CONNECT header", "CONNECT\nlogin:" + strings.Repeat("u", 2<<20) + "\n\n\x00", "header line too long"},
		{"headers too large in total", hello + "SEND\ndestination:/queue/a\n" + strings.Repeat("h:"+strings.Repeat("v", 900)+"\n", 5) + "\n\x00", "headers larger than 4096 bytes"},
		{"oversized frame", hello + "SEND\ndestination:/queue/a\n\n" + strings.Repeat("x", 4<<20) + "\x00", "frame larger than 65536 bytes"},
		{"oversized content-length", hello + "SEND\ndestination:/queue/a\ncontent-length:4194304\n\n" + strings.Repeat("x", 4<<20) + "\x00", "frame larger"},
		{"destination too long", hello + "SEND\ndestination:/queue/" + strings.Repeat("a", 64) + "\n\n\x00", "longer than 64 bytes"},
		{"destination not UTF-8", hello + "SEND\ndestination:/queue/\xff\xfe\n\n\x00", "UTF-8"},
		{"destination with .. segment", hello + "SEND\ndestination:/queue/../../etc\n\n\x00", ".. segment"},
		{"subscription with .. segment", hello + "SUBSCRIBE\nid:1\ndestination:/topic/a/../b\n\n\x00", ".. segment"},
		{"unknown destination prefix", hello + "SEND\ndestination:/exchange/amq.direct\n\n\x00", "must start with /queue/ or /topic/"},
		{"no destination prefix", hello + "SUBSCRIBE\nid:1\ndestination:orders\n\n\x00", "must start with /queue/ or /topic/"},
		{"empty destination name", hello + "SEND\ndestination:/topic/\n\n\x00", "no name"},
		{"control character in destination", hello + "SEND\ndestination:/queue/a\\nb\n\n\x00", "control character"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := dialRaw(t, b)
			written := r.writeAll(tc.input)
			r.expectError(tc.want)
			// The client wrote everything without a reset: the broker read
			// and discarded the rest after its ERROR.
			if err := <-written; err != nil {
				t.Errorf("writing the input: %v", err)
			}
		})
	}
}

func TestMaxConnections(t *testing.T) {
	t.Parallel()
	b := startBroker(t, Config{MaxConnections: 2})
	for range 2 {
		dialRaw(t, b).connect("1.2")
	}
	r := dialRaw(t, b)
	r.write("CONNECT\naccept-version:1.2\nhost:x\n\n\x00")
	r.expectError("too many connections")
}

// TestMaxConnectionsPerIP: past the limit, a connection from the same
// address (loopback counts) gets an ERROR; once one closes, the next is
// served.
func TestMaxConnectionsPerIP(t *testing.T) {
	t.Parallel()
	b := startBroker(t, Config{MaxConnectionsPerIP: 2})
	first := dialRaw(t, b)
	first.connect("1.2")
	dialRaw(t, b).connect("1.2")
	r := dialRaw(t, b)
	r.write("CONNECT\naccept-version:1.2\nhost:x\n\n\x00")
	r.expectError("too many connections from 127.0.0.1")

	_ = first.nc.Close()
	waitFor(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.perIP["127.0.0.1"] == 1
	})
	dialRaw(t, b).connect("1.2")
}

func TestUnsupportedVersionNamesTheSupportedOnes(t *testing.T) {
	t.Parallel()
	r := dialRaw(t, startBroker(t, Config{}))
	r.write("CONNECT\naccept-version:2.0,3.0\nhost:x\n\n\x00")
	f := r.expectError("supported protocol versions")
	if got := f.Header.Get(frame.Version); got != "1.0,1.1,1.2" {
		t.Errorf("version header %q, want 1.0,1.1,1.2", got)
	}
}

func TestAckWithTheWrongSubscription(t *testing.T) {
	t.Parallel()
	r := dialRaw(t, startBroker(t, Config{}))
	r.connect("1.1")
	r.write("SUBSCRIBE\nid:a\ndestination:/queue/wrongsub-a\nack:client\n\n\x00" +
		"SUBSCRIBE\nid:b\ndestination:/queue/wrongsub-b\nack:client\n\n\x00" +
		"SEND\ndestination:/queue/wrongsub-a\n\nx\x00")
	m := r.read()
	if m == nil || m.Command != frame.MESSAGE {
		t.Fatalf("want MESSAGE, got %v", m)
	}
	r.write("ACK\nsubscription:b\nmessage-id:" + m.Header.Get(frame.MessageId) + "\n\n\x00")
	r.expectError(`was delivered to subscription "a", not "b"`)

	r = dialRaw(t, startBroker(t, Config{}))
	r.connect("1.1")
	r.write("ACK\nsubscription:nope\nmessage-id:1\n\n\x00")
	r.expectError(`unknown subscription "nope"`)
}

func TestHeartBeatFloor(t *testing.T) {
	t.Parallel()
	b := startBroker(t, Config{})
	tests := []struct{ client, want string }{
		{"100,100", "1000,1000"}, // the floor: the client then heart-beats every 1 s at most
		{"0,0", "0,0"},           // none either way: CONNECTED promises none
		{"0,5000", "5000,0"},
		{"5000,0", "0,5000"},
	}
	for _, tc := range tests {
		r := dialRaw(t, b)
		r.write("CONNECT\naccept-version:1.2\nhost:x\nheart-beat:" + tc.client + "\n\n\x00")
		f := r.read()
		if f == nil || f.Command != frame.CONNECTED {
			t.Fatalf("want CONNECTED, got %v", f)
		}
		if got := f.Header.Get(frame.HeartBeat); got != tc.want {
			t.Errorf("client %s: heart-beat %q, want %q", tc.client, got, tc.want)
		}
	}
}

// TestQuietClientWithoutHeartBeatsStays: a go-stomp client that asks for no
// heart-beats takes the server's half of CONNECTED's heart-beat header as a
// promise and drops the connection after that long (plus its error margin)
// without a frame. Told 0, it keeps a quiet connection.
func TestQuietClientWithoutHeartBeatsStays(t *testing.T) {
	t.Parallel()
	b := startBroker(t, Config{HeartBeat: 100 * time.Millisecond})
	c := dial(t, b, stomp.ConnOpt.HeartBeat(0, 0), stomp.ConnOpt.HeartBeatError(50*time.Millisecond))
	time.Sleep(time.Second) // ten of the broker's shortest intervals, and no frame
	if err := c.Send("/queue/quiet", "text/plain", []byte("still here"), stomp.SendOpt.Receipt); err != nil {
		t.Fatalf("send after a quiet second: %v", err)
	}
}
