package stompc

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
)

// pipeConn is a net.Conn reading from a fixed input and writing to a
// buffer: the frame codec's tests need no broker.
type pipeConn struct {
	net.Conn
	in  *bytes.Reader
	out bytes.Buffer
}

func (p *pipeConn) Read(b []byte) (int, error)      { return p.in.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error)     { return p.out.Write(b) }
func (p *pipeConn) SetReadDeadline(time.Time) error { return nil }
func (p *pipeConn) Close() error                    { return nil }

func newTestConn(input []byte) (*Conn, *pipeConn) {
	p := &pipeConn{in: bytes.NewReader(input)}
	return &Conn{nc: p, r: bufio.NewReaderSize(p, 64), w: bufio.NewWriter(p), receiptTimeout: time.Second}, p
}

// Frames a broker sends are read with their headers in order (escapes
// undone, the first of a repeated key winning for Get), their body by
// content-length or up to the NUL, and heart-beat EOLs between them skipped.
func TestReadFrames(t *testing.T) {
	input := "\n\r\nMESSAGE\r\nsubscription:1\nmessage-id:m\\c1\nack:a\\\\1\ncontent-length:5\nx:first\nx:second\n\nhe\x00lo\x00\n\n" +
		"MESSAGE\nack:2\nlong:" + strings.Repeat("v", 300) + "\n\nno length\x00" +
		"RECEIPT\nreceipt-id:9\n\n\x00"
	c, _ := newTestConn([]byte(input))
	m, err := c.Next()
	if err != nil {
		t.Fatal(err)
	}
	want := Header{"subscription", "1", "message-id", "m:1", "ack", `a\1`, "content-length", "5", "x", "first", "x", "second"}
	if !reflect.DeepEqual(m.Header, want) || string(m.Body) != "he\x00lo" || m.ack != `a\1` || m.Header.Get("x") != "first" {
		t.Fatalf("first message = %q %q ack %q", m.Header, m.Body, m.ack)
	}
	m, err = c.Next()
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Body) != "no length" || len(m.Header.Get("long")) != 300 {
		t.Fatalf("second message = %q %q", m.Header, m.Body)
	}
	if _, err := c.Next(); err == nil { // the RECEIPT is skipped, then EOF
		t.Fatal("Next at the end of input: no error")
	}
}

// A broker's ERROR frame is an error carrying its message and body, the
// body once when it only repeats the message.
func TestErrorFrame(t *testing.T) {
	c, _ := newTestConn([]byte("ERROR\nmessage:bad selector\n\nat column 3\x00"))
	if _, err := c.Next(); err == nil || err.Error() != "broker error: bad selector: at column 3" {
		t.Fatalf("err = %v", err)
	}
	c, _ = newTestConn([]byte("ERROR\nmessage:bad selector\n\nbad selector\n\x00"))
	if _, err := c.Next(); err == nil || err.Error() != "broker error: bad selector" {
		t.Fatalf("err = %v", err)
	}
}

// Frames written escape header values (STOMP 1.2) and carry the body's
// length; an ACK names the message's ack header and the transaction.
func TestWriteFrames(t *testing.T) {
	c, p := newTestConn(nil)
	tx := &Tx{c: c, id: "t1"}
	if err := tx.Send("/queue/a", []byte("x\x00y"), func(f *frame.Frame) error { f.Header.Set("k", "a:b\nc"); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := tx.Ack(&Message{ack: "m:1"}); err != nil {
		t.Fatal(err)
	}
	want := "SEND\ndestination:/queue/a\nk:a\\cb\\nc\ntransaction:t1\ncontent-length:3\n\nx\x00y\x00" +
		"ACK\nid:m\\c1\ntransaction:t1\n\n\x00"
	if got := p.out.String(); got != want {
		t.Fatalf("wrote %q\nwant  %q", got, want)
	}
}

// Whatever a broker sends, reading never panics, and a frame it accepts has
// as many keys as values.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte("MESSAGE\nack:1\ncontent-length:2\n\nhi\x00"))
	f.Add([]byte("MESSAGE\nk:\\x\\\n\nbody\x00\n"))
	f.Add([]byte("ERROR\nmessage:m\n\n\x00"))
	f.Add([]byte("MESSAGE\ncontent-length:-1\n\n\x00"))
	f.Add([]byte("MESSAGE\nnocolon\n\n\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, _ := newTestConn(data)
		for range 4 {
			m, err := c.Next()
			if err != nil {
				return
			}
			if len(m.Header)%2 != 0 {
				t.Fatalf("odd header slice %q", m.Header)
			}
		}
	})
}

// failingConn is a connection whose writes fail.
type failingConn struct{ pipeConn }

func (f *failingConn) Write([]byte) (int, error) { return 0, net.ErrClosed }

// Commit tells a COMMIT that went out unconfirmed (the connection ended or
// the receipt timed out: ErrInDoubt) from one the broker confirmed, refused
// with an ERROR frame, or never received (the write failed).
func TestCommitInDoubt(t *testing.T) {
	commit := func(c *Conn) error { return (&Tx{c: c, id: "t1"}).Commit() }
	cases := []struct {
		name    string
		conn    func() *Conn
		ok      bool
		inDoubt bool
	}{
		{name: "receipt", ok: true, conn: func() *Conn {
			c, _ := newTestConn([]byte("MESSAGE\nack:5\n\nx\x00RECEIPT\nreceipt-id:1\n\n\x00"))
			return c
		}},
		{name: "connection lost before the receipt", inDoubt: true, conn: func() *Conn {
			c, _ := newTestConn([]byte("MESSAGE\nack:5\n\nx\x00"))
			return c
		}},
		{name: "receipt timeout", inDoubt: true, conn: func() *Conn {
			client, broker := net.Pipe()
			t.Cleanup(func() { client.Close(); broker.Close() })
			go func() { _, _ = bufio.NewReader(broker).ReadString(0) }() // takes the COMMIT, answers nothing
			return &Conn{nc: client, r: bufio.NewReader(client), w: bufio.NewWriter(client), receiptTimeout: 50 * time.Millisecond}
		}},
		{name: "ERROR frame", conn: func() *Conn {
			c, _ := newTestConn([]byte("ERROR\nreceipt-id:1\nmessage:unknown transaction\n\n\x00"))
			return c
		}},
		{name: "write fails", conn: func() *Conn {
			p := &failingConn{pipeConn{in: bytes.NewReader(nil)}}
			return &Conn{nc: p, r: bufio.NewReader(p), w: bufio.NewWriter(p), receiptTimeout: time.Second}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := commit(tc.conn())
			if (err == nil) != tc.ok || errors.Is(err, ErrInDoubt) != tc.inDoubt {
				t.Fatalf("Commit = %v; want ok %v, in doubt %v", err, tc.ok, tc.inDoubt)
			}
		})
	}
}
