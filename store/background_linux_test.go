//go:build linux

package store_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/opsrunner/opsrunner/store"
)

// The flusher writes the runs nobody waits for at a background CPU
// priority, 10 nicer than the process (Linux keeps a nice value per
// thread), so that on a busy machine they yield to deliveries and
// webhooks; a write that a caller of Flush waits for runs at the
// process's own priority.
func TestBoltWritesInTheBackgroundUnlessWaitedFor(t *testing.T) {
	t.Parallel()
	own, err := threadNice()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		interval time.Duration
		flush    bool
		want     int
	}{
		{"written at the flusher's tick", 5 * time.Millisecond, false, min(own+10, 19)},
		{"waited for by Flush", time.Hour, true, own},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writer := make(chan string, 16)
			s := openBolt(t, store.BoltOptions{FlushInterval: tc.interval, OnFlush: func(int, time.Duration, error) {
				nice, err := threadNice()
				select {
				case writer <- fmt.Sprintf("nice %d, err %v", nice, err):
				default:
				}
			}})
			if err := s.PutRun(t.Context(), store.Run{ID: ulid.Make().String(), StartedAt: time.Now()}); err != nil {
				t.Fatal(err)
			}
			if tc.flush {
				if err := s.Flush(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case got := <-writer:
				if want := fmt.Sprintf("nice %d, err <nil>", tc.want); got != want {
					t.Fatalf("the write ran at %s, want %s (the process's nice is %d)", got, want, own)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no write within 10 s")
			}
		})
	}
}

// threadNice is the nice value of the calling goroutine's thread.
func threadNice() (int, error) {
	raw, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0) // 0: this thread
	return 20 - raw, err
}
