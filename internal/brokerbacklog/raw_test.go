package brokerbacklog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
)

// rawConn is a STOMP 1.2 connection written frame by frame, for what
// go-stomp cannot do: an ACK that asks for a receipt, and many SENDs
// buffered before one receipt. One goroutine uses it.
type rawConn struct {
	nc net.Conn
	w  *bufio.Writer
	r  *frame.Reader
}

// dialRaw connects to addr without heart-beats and waits for CONNECTED.
func dialRaw(addr string) (*rawConn, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	c := &rawConn{nc: nc, w: bufio.NewWriterSize(nc, 64<<10), r: frame.NewReaderSize(nc, 64<<10)}
	c.w.WriteString("CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\n\n\x00")
	f, err := c.next(10 * time.Second)
	if err == nil && f.Command != frame.CONNECTED {
		err = fmt.Errorf("CONNECT answered with %s %s", f.Command, f.Header.Get(frame.Message))
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	return c, nil
}

func dialRawT(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := dialRaw(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.nc.Close() })
	return c
}

// frame buffers a frame of cmd with header pairs hdr and body (sent with
// content-length when not nil); next or flush sends it.
func (c *rawConn) frame(cmd string, body []byte, hdr ...string) {
	c.w.WriteString(cmd)
	c.w.WriteByte('\n')
	for i := 0; i+1 < len(hdr); i += 2 {
		c.w.WriteString(hdr[i])
		c.w.WriteByte(':')
		c.w.WriteString(hdr[i+1])
		c.w.WriteByte('\n')
	}
	if body != nil {
		c.w.WriteString("content-length:" + strconv.Itoa(len(body)) + "\n")
	}
	c.w.WriteByte('\n')
	c.w.Write(body)
	c.w.WriteByte(0)
}

func (c *rawConn) flush() error { return c.w.Flush() }

// next flushes what is buffered and reads the next frame within wait,
// skipping heart-beats. An ERROR frame is an error.
func (c *rawConn) next(wait time.Duration) (*frame.Frame, error) {
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(wait))
	for {
		f, err := c.r.Read()
		if err != nil {
			return nil, err
		}
		if f == nil {
			continue
		}
		if f.Command == frame.ERROR {
			return nil, fmt.Errorf("broker error: %s %s", f.Header.Get(frame.Message), f.Body)
		}
		return f, nil
	}
}

// waitReceipt reads frames up to the RECEIPT id; MESSAGEs before it fail.
func (c *rawConn) waitReceipt(id string, wait time.Duration) error {
	f, err := c.next(wait)
	if err != nil {
		return fmt.Errorf("waiting for receipt %s: %w", id, err)
	}
	if f.Command != frame.RECEIPT || f.Header.Get(frame.ReceiptId) != id {
		return fmt.Errorf("waiting for receipt %s: got %s", id, f.Command)
	}
	return nil
}

// disconnect sends DISCONNECT with a receipt, which the broker answers
// after applying every frame before it, and closes the connection.
func (c *rawConn) disconnect() error {
	c.frame(frame.DISCONNECT, nil, frame.Receipt, "bye")
	err := c.waitReceipt("bye", 30*time.Second)
	return errors.Join(err, c.nc.Close())
}

// body is message seq's body: its number, then padding to size bytes.
func body(seq, size int) []byte {
	b := bytes.Repeat([]byte("."), size)
	copy(b, strconv.Itoa(seq)+" ")
	return b
}

// seqOf checks a MESSAGE's body against its seq header and returns seq.
func seqOf(f *frame.Frame, size int) (int, error) {
	seq, err := strconv.Atoi(f.Header.Get("seq"))
	if err != nil {
		return 0, fmt.Errorf("message without a seq header: %v", f.Header)
	}
	if !bytes.Equal(f.Body, body(seq, size)) {
		return 0, fmt.Errorf("message %d: body of %d bytes does not match", seq, len(f.Body))
	}
	return seq, nil
}

// fill sends n persistent messages of size bytes to queue in order over
// one connection, numbered by a seq header from 0, with priority
// priority(seq); the last asks for a receipt, awaited.
func fill(t *testing.T, addr, queue string, n, size int, priority func(seq int) int) {
	t.Helper()
	c := dialRawT(t, addr)
	for seq := range n {
		hdr := []string{frame.Destination, queue, "persistent", "true", "seq", strconv.Itoa(seq), "priority", strconv.Itoa(priority(seq))}
		if seq == n-1 {
			hdr = append(hdr, frame.Receipt, "filled")
		}
		c.frame(frame.SEND, body(seq, size), hdr...)
	}
	if err := c.waitReceipt("filled", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.disconnect(); err != nil {
		t.Fatal(err)
	}
}

// rss is the resident set of process pid: VmRSS, its anonymous part and
// its file-backed part, in MiB, for the log.
func rss(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	var parts []string
	for _, line := range strings.Split(string(data), "\n") {
		for _, name := range []string{"VmRSS", "RssAnon", "RssFile"} {
			if v, ok := strings.CutPrefix(line, name+":"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				parts = append(parts, fmt.Sprintf("%s %d MiB", name, kb>>10))
			}
		}
	}
	return strings.Join(parts, ", ")
}
