package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// runLog is the write-ahead log of a Bolt store opened with SyncLog: Flush
// makes the buffered runs durable by appending them to it with one
// fdatasync, where a bbolt commit takes two and rewrites whole pages; the
// flusher still writes them to bbolt at its own pace. The log is a series
// of files <store>.runlog.<n>: each write of a batch to bbolt starts the
// next file (rotate), and once that write is durable the files up to the
// one it ended are removed (removeThrough). Every run in a file was put
// before the batch that ended the file was taken, so that batch (or an
// earlier one) holds it or a newer version of it. Open replays what is
// left, in order.
//
// A record is a 4-byte big-endian length, a 4-byte CRC-32 (Castagnoli) of
// the payload, and the payload, a run in its stored JSON form. A record cut
// short or failing its checksum ends the file: it is the tail of an append
// that a crash interrupted, whose Flush never returned. (One that passes
// its checksum but does not decode ends it too: the agent still starts.)
type runLog struct {
	base string // the store's path; files are base + ".runlog." + n

	mu      sync.Mutex // one append at a time; guards the fields below
	f       *os.File
	n       uint64 // the open file's number
	oldest  uint64 // files from oldest to n may exist (see removeThrough)
	buf     []byte
	durable uint64 // the highest put sequence number made durable
	written bool   // the open file has records
	err     error  // a failed append or rotation: the log is unusable
}

var logCRC = crc32.MakeTable(crc32.Castagnoli)

// logPath is the name of the store at base's log file n.
func logPath(base string, n uint64) string { return base + ".runlog." + strconv.FormatUint(n, 10) }

func (l *runLog) path(n uint64) string { return logPath(l.base, n) }

// logFiles returns the numbers of base's log files, ascending. (It reads
// the directory rather than globbing: a data dir's path may hold glob
// characters.)
func logFiles(base string) ([]uint64, error) {
	entries, err := os.ReadDir(filepath.Dir(base))
	if err != nil {
		return nil, err
	}
	prefix := filepath.Base(base) + ".runlog."
	var ns []uint64
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(rest, 10, 64); err == nil {
			ns = append(ns, n)
		}
	}
	slices.Sort(ns)
	return ns, nil
}

// readRunLogs returns the runs in base's log files, oldest first (a run
// put again appears again, later), and the files' numbers.
func readRunLogs(base string) ([]Run, []uint64, error) {
	ns, err := logFiles(base)
	if err != nil {
		return nil, nil, fmt.Errorf("list run logs: %w", err)
	}
	var runs []Run
	for _, n := range ns {
		b, err := os.ReadFile(logPath(base, n))
		if err != nil {
			return nil, nil, fmt.Errorf("read run log: %w", err)
		}
		runs = decodeRunLog(b, runs)
	}
	return runs, ns, nil
}

// decodeRunLog appends the runs of one log file's bytes to runs, up to the
// first record cut short, failing its checksum or not decoding.
func decodeRunLog(b []byte, runs []Run) []Run {
	for len(b) >= 8 {
		size, sum := binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])
		if uint64(len(b)-8) < uint64(size) {
			break // cut short
		}
		payload := b[8 : 8+size]
		if crc32.Checksum(payload, logCRC) != sum {
			break // torn
		}
		r, err := decodeRun(payload)
		if err != nil || r.ID == "" {
			break // checksummed but unreadable: the file is damaged from here
		}
		runs = append(runs, r)
		b = b[8+size:]
	}
	return runs
}

// replayRunLogs writes the runs of the log files that a crash left beside
// the store at path into db, and removes the files; it returns the
// highest file number there was (0: none). A logged run replaces a stored
// one only if it is at least as far along (see progress): bbolt may hold a
// newer version than a file that the crash kept from being removed.
func replayRunLogs(db *bolt.DB, path string, maxRuns int) (uint64, error) {
	runs, ns, err := readRunLogs(path)
	if err != nil || len(ns) == 0 {
		return 0, err
	}
	latest := make(map[string]Run, len(runs))
	for _, r := range runs {
		latest[r.ID] = r
	}
	ids := slices.Sorted(maps.Keys(latest))
	err = db.Update(func(tx *bolt.Tx) error {
		gs := openGens(tx, nil, maxRuns)
		for _, id := range ids {
			r := latest[id]
			if v := gs.stored([]byte(id)); v != nil {
				if stored, err := decodeRun(v); err == nil && progress(stored) > progress(r) {
					continue
				}
			}
			if err := gs.put(r); err != nil {
				return err
			}
		}
		if err := gs.retain(maxRuns); err != nil {
			return err
		}
		_, err := gs.commit()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("replay run log: %w", err)
	}
	for _, n := range ns {
		if err := os.Remove(logPath(path, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("remove replayed run log: %w", err)
		}
	}
	return ns[len(ns)-1], nil
}

// progress ranks how far along a run's record is: running, ended, ended
// with its delivery's outcome.
func progress(r Run) int {
	switch {
	case r.Status == StatusRunning:
		return 0
	case r.Outcome == "":
		return 1
	default:
		return 2
	}
}

// openRunLog starts log file n for appends.
func openRunLog(base string, n uint64) (*runLog, error) {
	f, err := createLogFile(base, n)
	if err != nil {
		return nil, fmt.Errorf("open run log: %w", err)
	}
	return &runLog{base: base, f: f, n: n, oldest: n}, nil
}

// createLogFile creates (or empties) log file n, its name made durable.
func createLogFile(base string, n uint64) (*os.File, error) {
	f, err := os.OpenFile(logPath(base, n), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syncDir(filepath.Dir(base)); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// append writes runs to the log and syncs it; seq is the put sequence
// number they reach. Call with l.mu held.
func (l *runLog) append(runs []loggedRun, seq uint64) error {
	if l.err != nil {
		return l.err
	}
	if l.f == nil {
		return fmt.Errorf("append to run log: %w", ErrClosed)
	}
	l.buf = l.buf[:0]
	for _, lr := range runs {
		start := len(l.buf)
		l.buf = append(l.buf, 0, 0, 0, 0, 0, 0, 0, 0)
		var err error
		if l.buf, err = appendStoredRun(l.buf, lr.run); err != nil {
			return err
		}
		payload := l.buf[start+8:]
		binary.BigEndian.PutUint32(l.buf[start:], uint32(len(payload)))
		binary.BigEndian.PutUint32(l.buf[start+4:], crc32.Checksum(payload, logCRC))
	}
	if _, err := l.f.Write(l.buf); err != nil {
		l.err = fmt.Errorf("append to run log: %w", err)
		return l.err
	}
	if err := l.f.Sync(); err != nil {
		l.err = fmt.Errorf("sync run log: %w", err)
		return l.err
	}
	l.durable = max(l.durable, seq)
	l.written = true
	if cap(l.buf) > maxKeptFlushBuf {
		l.buf = nil
	}
	return nil
}

// rotate starts the next file and returns the number of the one it ended.
// Call with l.mu held.
func (l *runLog) rotate() (uint64, error) {
	if l.err != nil {
		return 0, l.err
	}
	ended := l.n
	f, err := createLogFile(l.base, ended+1)
	if err != nil {
		l.err = fmt.Errorf("rotate run log: %w", err)
		return 0, l.err
	}
	l.f.Close()
	l.f, l.n, l.written = f, ended+1, false
	return ended, nil
}

// removeThrough removes the files numbered up to n: their runs are in
// bbolt. It starts at the oldest file not removed yet (one a failed bbolt
// write kept, or the one it last failed to remove), not at a listing of
// the directory.
func (l *runLog) removeThrough(n uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ; l.oldest <= n; l.oldest++ {
		if err := os.Remove(l.path(l.oldest)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove run log: %w", err)
		}
	}
	return nil
}

// close closes the open file.
func (l *runLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
