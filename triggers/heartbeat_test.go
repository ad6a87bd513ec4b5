package triggers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/store"
	"github.com/opsrunner/opsrunner/triggers"
)

// TestListenerSurvivesLostHeartBeats freezes each broker under a running
// listener (SIGSTOP: the TCP connection stays open but nothing is answered,
// as with a hung broker or a network that drops packets):
//   - the listener notices the missing heart-beats within seconds and stops
//     reporting "listening";
//   - its reconnect attempts reach the frozen broker's TCP port but never get
//     CONNECTED: each one gives up and is retried, none hangs;
//   - once the broker runs again the listener reconnects, and a persistent
//     message sent then is processed exactly once.
//
// Not parallel with other tests: freezing a shared broker would stall them
// (Go runs it before the parallel tests start). Its subtests, one broker
// each, run in parallel with one another.
func TestListenerSurvivesLostHeartBeats(t *testing.T) {
	for _, bs := range brokerStarters {
		t.Run(bs.kind, func(t *testing.T) {
			t.Parallel()
			b := bs.start(t)
			in := "/queue/" + uniq("heartbeat")
			h := newHarness(t, b, harnessOpts{
				run:       func(context.Context, triggers.ListenerSpec, *triggers.OpDelivery) error { return nil },
				heartBeat: time.Second,
			}, spec(uniq("heartbeat"), in, nil))
			h.waitListening()
			send(t, b, in, nil, "before")
			if e := h.next(20 * time.Second); e.Outcome != store.OutcomeCommitted || e.body != "before" {
				t.Fatalf("before the pause: %+v", e)
			}

			b.Pause()
			t.Cleanup(b.Resume) // a failed test must not leave the shared broker frozen
			paused := time.Now()
			state := h.waitState(noticeWithin(bs.kind), "notice the missing heart-beats", func(s string) bool { return s != "listening" })
			t.Logf("missing heart-beats noticed after %s: %q", time.Since(paused).Round(100*time.Millisecond), state)

			noticed := time.Now()
			state = h.waitState(20*time.Second, "give up connecting to the frozen broker", isDialFailure)
			t.Logf("a connection attempt to the frozen broker gave up after %s: %q", time.Since(noticed).Round(100*time.Millisecond), state)

			b.Resume()
			resumed := time.Now()
			h.waitListening()
			t.Logf("listening again %s after the resume", time.Since(resumed).Round(100*time.Millisecond))
			send(t, b, in, nil, "after")
			if e := h.next(60 * time.Second); e.Outcome != store.OutcomeCommitted || e.body != "after" {
				t.Fatalf("after the pause: %+v", e)
			}
			select {
			case e := <-h.events:
				t.Errorf("extra settlement after the pause: %+v", e)
			case <-time.After(300 * time.Millisecond):
			}
		})
	}
}

// noticeWithin is how long a listener with a 1 s heart-beat may take to
// notice that a broker of kind has gone silent: two of the broker's
// heart-beat intervals plus a grace. Every broker here heart-beats as often
// as the client asks (the embedded one down to its 1 s floor,
// broker.Config.HeartBeat).
func noticeWithin(string) time.Duration { return 10 * time.Second }

// isDialFailure reports whether a listener state is a failed connection
// attempt: the TCP connect or the STOMP CONNECT did not succeed.
func isDialFailure(state string) bool {
	return strings.HasPrefix(state, "error: dial broker") || strings.HasPrefix(state, "error: connect to broker")
}

// waitState polls the (only) listener's state until ok accepts it, and
// returns it; it fails the test after timeout, naming what was awaited and
// the states seen meanwhile.
func (h *harness) waitState(timeout time.Duration, what string, ok func(state string) bool) string {
	h.t.Helper()
	var seen []string
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, s := range h.m.Status() {
			if ok(s.State) {
				return s.State
			}
			if len(seen) == 0 || seen[len(seen)-1] != s.State {
				seen = append(seen, s.State)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("listener did not %s within %s; states seen: %q", what, timeout, seen)
	return ""
}
