package broker

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-stomp/stomp/v3/frame"
)

// IsLoopback reports whether addr (host:port, or a net.Addr's String) names
// only this machine: a loopback IP or "localhost". An empty host (all
// interfaces) or any other name is not.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// remoteIP is the IP address nc comes from, "" when its remote address is
// no TCP address (net.Pipe).
func remoteIP(nc net.Conn) string {
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return ""
}

// checkListener refuses to serve an open broker (no users) on anything but
// loopback, and warns when it serves one there.
func (b *Broker) checkListener(addr net.Addr) error {
	if !b.auth.open() {
		return nil
	}
	if _, ok := addr.(*net.TCPAddr); ok && !IsLoopback(addr.String()) {
		return fmt.Errorf("serve on %s: no broker users are configured, and a broker without users may only listen on a loopback address", addr)
	}
	b.log.Warn("broker: no users configured: any client on this machine may connect, subscribe and send", "addr", addr.String())
	return nil
}

// checkDestination reports why dest may not be sent to or subscribed to:
// too long, not UTF-8, a control character, a ".." segment, or a prefix
// other than /queue/ and /topic/ (the two kinds of destination the broker
// has).
func checkDestination(dest string, maxBytes int) error {
	switch {
	case len(dest) > maxBytes:
		return protoErr("destination longer than %d bytes", maxBytes)
	case !utf8.ValidString(dest):
		return protoErr("destination %q is not valid UTF-8", dest)
	case strings.IndexFunc(dest, isControl) >= 0:
		return protoErr("destination %q has a control character", dest)
	}
	name, ok := cutPrefix(dest, "/queue/")
	if !ok {
		name, ok = cutPrefix(dest, "/topic/")
	}
	if !ok {
		return protoErr("destination %q must start with /queue/ or /topic/", dest)
	}
	if name == "" {
		return protoErr("destination %q has no name after its prefix", dest)
	}
	if !strings.Contains(name, "..") {
		return nil
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == ".." {
			return protoErr("destination %q has a .. segment", dest)
		}
	}
	return nil
}

// errorContentType is the content type of ERROR frames' bodies. The
// charset is named (UTF-8, the default of STOMP 1.1 and later anyway):
// the npm client stompit 1.0.0 crashes its process with an unhandled
// 'error' event on an ERROR frame whose content-type is exactly
// "text/plain" (it destroys the frame's stream instead of the client),
// and reports any other as a connection error, as it means to.
const errorContentType = "text/plain;charset=utf-8"

// errorFrame is the ERROR frame saying msg, with extra header pairs.
func errorFrame(msg string, headers ...string) *frame.Frame {
	e := frame.New(frame.ERROR, frame.Message, msg, frame.ContentType, errorContentType)
	for i := 0; i+1 < len(headers); i += 2 {
		e.Header.Add(headers[i], headers[i+1])
	}
	e.Body = []byte(msg)
	e.Header.Add(frame.ContentLength, strconv.Itoa(len(e.Body)))
	return e
}

// lingerTimeout bounds how long a failed connection is read and discarded
// after its ERROR frame, so that its close does not reset the connection
// while the client still writes, losing the ERROR (see conn.drain).
const lingerTimeout = 2 * time.Second

// maxRefusing bounds the connections being refused at once; past it more
// are closed without an ERROR frame.
const maxRefusing = 64

// refuse answers a connection over MaxConnections with an ERROR frame and
// closes it. It blocks for at most about twice lingerTimeout.
func refuse(nc net.Conn, msg string) {
	defer nc.Close()
	_ = nc.SetWriteDeadline(time.Now().Add(lingerTimeout))
	if err := frame.NewWriter(nc).Write(errorFrame(msg)); err != nil {
		return
	}
	halfClose(nc)
	_ = nc.SetReadDeadline(time.Now().Add(lingerTimeout))
	_, _ = io.CopyN(io.Discard, nc, 64<<10)
}

// halfClose ends the writing side of nc when it can (TCP, TLS), so that
// the client reads EOF after what was written while its own writes are
// still read; other connections are left as they are.
func halfClose(nc net.Conn) bool {
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite() == nil
	}
	return false
}
