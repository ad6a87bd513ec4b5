package broker

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// entryKey is the journal key of an entry of the queue named name:
// name, 0, priority, seq (big-endian), so that the entries of one queue
// and priority are stored, and read back, in the order they were sent.
func entryKey(name string, priority int, seq uint64) []byte {
	k := make([]byte, 0, len(name)+10)
	k = append(k, name...)
	k = append(k, 0, byte(priority))
	return binary.BigEndian.AppendUint64(k, seq)
}

// levelPrefix is the prefix of the keys of one queue and priority (also
// its bucketCounts key).
func levelPrefix(name string, priority int) []byte {
	return append(append([]byte(name), 0), byte(priority))
}

// queuePrefix is the prefix of every key of the queue named name.
func queuePrefix(name string) []byte { return append([]byte(name), 0) }

// levelKey is the level prefix of an entry key.
func levelKey(key []byte) []byte { return key[:len(key)-8] }

// splitKey parses an entry key; ok is false for a malformed one.
func splitKey(key []byte) (name string, priority int, seq uint64, ok bool) {
	if len(key) < 10 || key[len(key)-10] != 0 || key[len(key)-9] > 9 {
		return "", 0, 0, false
	}
	return string(key[:len(key)-10]), int(key[len(key)-9]), binary.BigEndian.Uint64(key[len(key)-8:]), true
}

// splitLevel parses a bucketCounts key.
func splitLevel(key []byte) (name string, priority int, ok bool) {
	if len(key) < 2 || key[len(key)-2] != 0 || key[len(key)-1] > 9 {
		return "", 0, false
	}
	return string(key[:len(key)-2]), int(key[len(key)-1]), true
}

// entry encoding: version(1) id dest priority(1) expires deliveries nhdr {k v}... body
// strings are uvarint length + bytes, numbers are varints.

func encodeEntry(e *entry) []byte {
	n := 32 + len(e.id) + len(e.dest) + len(e.body)
	for _, h := range e.hdr {
		n += len(h) + 2
	}
	buf := make([]byte, 0, n)
	buf = append(buf, 1)
	buf = appendString(buf, e.id)
	buf = appendString(buf, e.dest)
	buf = append(buf, byte(e.priority))
	buf = binary.AppendVarint(buf, e.expires)
	buf = binary.AppendUvarint(buf, uint64(e.deliveries))
	buf = binary.AppendUvarint(buf, uint64(len(e.hdr)/2))
	for _, h := range e.hdr {
		buf = appendString(buf, h)
	}
	return append(buf, e.body...)
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

var errCorrupt = errors.New("corrupt journal record")

func decodeEntry(v []byte, withBody bool) (*entry, error) {
	r := bytes.NewReader(v)
	ver, err := r.ReadByte()
	if err != nil || ver != 1 {
		return nil, errCorrupt
	}
	str := func() (string, error) {
		n, err := binary.ReadUvarint(r)
		if err != nil || n > uint64(r.Len()) {
			return "", errCorrupt
		}
		b := make([]byte, n)
		_, _ = r.Read(b)
		return string(b), nil
	}
	e := &entry{persistent: true}
	if e.id, err = str(); err != nil {
		return nil, err
	}
	if e.dest, err = str(); err != nil {
		return nil, err
	}
	p, err := r.ReadByte()
	if err != nil || p > 9 {
		return nil, errCorrupt
	}
	e.priority = int(p)
	if e.expires, err = binary.ReadVarint(r); err != nil {
		return nil, errCorrupt
	}
	d, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, errCorrupt
	}
	e.deliveries = int(d)
	nh, err := binary.ReadUvarint(r)
	if err != nil || nh > uint64(r.Len()) {
		return nil, errCorrupt
	}
	e.hdr = make([]string, 0, 2*nh)
	for range 2 * nh {
		s, err := str()
		if err != nil {
			return nil, err
		}
		e.hdr = append(e.hdr, s)
	}
	e.size = r.Len()
	if withBody {
		e.body = make([]byte, r.Len())
		_, _ = r.Read(e.body)
	}
	return e, nil
}
