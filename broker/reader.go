package broker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/go-stomp/stomp/v3/frame"
)

// protocolError marks input the broker answers with an ERROR frame; headers
// are extra key, value pairs for that frame.
type protocolError struct {
	msg     string
	headers []string
}

func (e *protocolError) Error() string { return e.msg }

func protoErr(format string, args ...any) error {
	return &protocolError{msg: fmt.Sprintf(format, args...)}
}

// frameReader reads client frames with bounds on frame size, header count,
// header line length and total header size. go-stomp's frame.Reader has none
// (it allocates whatever content-length says, up to 4 GiB), so the broker
// parses frames itself into frame.Frame values; frame.Writer still writes them.
type frameReader struct {
	r          *bufio.Reader
	maxFrame   int
	maxHeaders int
	maxLine    int  // bytes of one header line, EOL excluded
	maxHeader  int  // bytes of all header lines of a frame, the command's included
	unescape   bool // STOMP 1.1+ header escaping, set after CONNECT
}

// readBufferBytes is the size of a connection's read buffer; longer header
// lines are gathered in a separate slice, up to the line limit.
const readBufferBytes = 8 << 10

func newFrameReader(r io.Reader, cfg Config) *frameReader {
	return &frameReader{
		r:          bufio.NewReaderSize(r, readBufferBytes),
		maxFrame:   cfg.MaxFrameBytes,
		maxHeaders: cfg.MaxHeaders,
		maxLine:    cfg.MaxHeaderBytes,
		maxHeader:  cfg.MaxHeaderTotalBytes,
	}
}

var clientCommands = map[string]bool{
	frame.CONNECT: true, frame.STOMP: true, frame.SEND: true, frame.SUBSCRIBE: true,
	frame.UNSUBSCRIBE: true, frame.ACK: true, frame.NACK: true, frame.BEGIN: true,
	frame.COMMIT: true, frame.ABORT: true, frame.DISCONNECT: true,
}

// readLine returns one line without its EOL; it fails on lines longer than
// maxLine. A line longer than the read buffer is copied into a slice of its
// own, which grows no further than the limit.
func (fr *frameReader) readLine() ([]byte, error) {
	line, err := fr.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		long := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) && len(long) <= fr.maxLine+1 {
			line, err = fr.r.ReadSlice('\n')
			long = append(long, line...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, protoErr("header line too long: over %d bytes", fr.maxLine)
		}
		line = long
	}
	if err != nil {
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) > fr.maxLine {
		return nil, protoErr("header line too long: over %d bytes", fr.maxLine)
	}
	return line, nil
}

// read returns the next frame, or nil for a heart-beat EOL.
func (fr *frameReader) read() (*frame.Frame, error) {
	line, err := fr.readLine()
	if err != nil {
		return nil, err
	}
	if len(line) == 0 {
		return nil, nil
	}
	budget := fr.maxFrame - len(line)
	headerBudget := fr.maxHeader - len(line) - 1
	cmd := string(line)
	if !clientCommands[cmd] {
		if len(cmd) > 32 {
			cmd = cmd[:32]
		}
		return nil, protoErr("unknown command %q", cmd)
	}
	f := frame.New(cmd)
	unescape := fr.unescape && cmd != frame.CONNECT && cmd != frame.STOMP
	for {
		line, err := fr.readLine()
		if err != nil {
			return nil, err
		}
		if len(line) == 0 {
			break
		}
		if budget -= len(line) + 1; budget < 0 {
			return nil, protoErr("frame larger than %d bytes", fr.maxFrame)
		}
		if headerBudget -= len(line) + 1; headerBudget < 0 {
			return nil, protoErr("headers larger than %d bytes", fr.maxHeader)
		}
		if f.Header.Len() >= fr.maxHeaders {
			return nil, protoErr("more than %d headers", fr.maxHeaders)
		}
		k, v, ok := bytes.Cut(line, []byte{':'})
		if !ok || len(k) == 0 {
			return nil, protoErr("malformed header line")
		}
		var key, val string
		if unescape {
			if key, err = unescapeHeader(k); err == nil {
				val, err = unescapeHeader(v)
			}
			if err != nil {
				return nil, err
			}
		} else {
			key, val = string(k), string(v)
		}
		f.Header.Add(key, val)
	}
	if cl, ok := f.Header.Contains(frame.ContentLength); ok {
		n, err := strconv.ParseUint(cl, 10, 31)
		if err != nil {
			return nil, protoErr("bad content-length %q", cl)
		}
		if int(n) > budget {
			return nil, protoErr("frame larger than %d bytes", fr.maxFrame)
		}
		f.Body = make([]byte, n)
		if _, err := io.ReadFull(fr.r, f.Body); err != nil {
			return nil, err
		}
		nul, err := fr.r.ReadByte()
		if err != nil {
			return nil, err
		}
		if nul != 0 {
			return nil, protoErr("frame body longer than its content-length")
		}
		return f, nil
	}
	var body []byte
	for {
		chunk, err := fr.r.ReadSlice(0)
		if len(chunk) > budget+1 {
			return nil, protoErr("frame larger than %d bytes", fr.maxFrame)
		}
		budget -= len(chunk)
		if err == nil {
			body = append(body, chunk[:len(chunk)-1]...)
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
		body = append(body, chunk...)
	}
	f.Body = body
	return f, nil
}

func unescapeHeader(b []byte) (string, error) {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b), nil
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			out = append(out, b[i])
			continue
		}
		i++
		if i == len(b) {
			return "", protoErr("bad escape in header")
		}
		switch b[i] {
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 'c':
			out = append(out, ':')
		case '\\':
			out = append(out, '\\')
		default:
			return "", protoErr("bad escape \\%c in header", b[i])
		}
	}
	return string(out), nil
}
