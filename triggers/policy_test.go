package triggers

import (
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/scripts"
)

func TestRetryDestinations(t *testing.T) {
	cases := []struct {
		name        string
		destination string
		fanout      string
		want        string
	}{
		{"a queue retries on itself", "/queue/orders", "", "/queue/orders"},
		{"a topic copy run once retries on the listener's queue", "/topic/news", scripts.FanoutOnce, "/queue/opsrunner.retry.p.l"},
		{"a topic copy run on each agent retries on that agent's queue", "/topic/news", scripts.FanoutEach, "/queue/opsrunner.retry.p.l.agent-1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := ListenerSpec{ID: "p/l", Project: "p", Listener: scripts.Listener{Name: "l", Destination: tc.destination, Fanout: tc.fanout}}
			if got := policyFor("agent-1", spec).retryDest; got != tc.want {
				t.Fatalf("retry destination %q, want %q", got, tc.want)
			}
		})
	}
}

// maxRedeliveries counts redeliveries, as ActiveMQ's maximumRedeliveries
// does: 0 dead-letters a message on its first failure, -1 never does, and N
// dead-letters it when attempt N+1 fails.
func TestMaxRedeliveries(t *testing.T) {
	cases := []struct {
		max     int
		attempt int // the attempt that failed
		dead    bool
	}{
		{0, 1, true},
		{1, 1, false}, {1, 2, true},
		{5, 5, false}, {5, 6, true},
		{-1, 1, false}, {-1, 1000, false},
	}
	for _, tc := range cases {
		p := policyFor("agent-1", ListenerSpec{ID: "p/l", Project: "p", Listener: scripts.Listener{
			Name: "l", Destination: "/queue/in", Redelivery: scripts.Redelivery{MaxRedeliveries: tc.max}}})
		if got := p.deadLetterDue(tc.attempt); got != tc.dead {
			t.Errorf("maxRedeliveries %d, attempt %d failed: dead-lettered %v, want %v", tc.max, tc.attempt, got, tc.dead)
		}
	}
}

// The wait before redelivering grows from initialDelay by multiplier up to
// maxDelay; an initialDelay of 0 redelivers at once.
func TestBackoff(t *testing.T) {
	cases := []struct {
		name                 string
		initial, max         time.Duration
		multiplier           float64
		want1, want2, want10 time.Duration
	}{
		{"the defaults", time.Second, time.Minute, 2, time.Second, 2 * time.Second, time.Minute},
		{"initialDelay 0", 0, time.Minute, 2, 0, 0, 0},
		{"a constant wait", 3 * time.Second, 3 * time.Second, 1, 3 * time.Second, 3 * time.Second, 3 * time.Second},
		{"an initialDelay above the default maxDelay", 5 * time.Minute, 5 * time.Minute, 2, 5 * time.Minute, 5 * time.Minute, 5 * time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := policyFor("agent-1", ListenerSpec{ID: "p/l", Project: "p", Listener: scripts.Listener{Name: "l", Destination: "/queue/in",
				Redelivery: scripts.Redelivery{InitialDelay: scripts.Duration(tc.initial), Multiplier: tc.multiplier, MaxDelay: scripts.Duration(tc.max)}}})
			for attempt, want := range map[int]time.Duration{1: tc.want1, 2: tc.want2, 10: tc.want10} {
				if got := p.backoff(attempt); got != want {
					t.Errorf("after attempt %d: wait %s, want %s", attempt, got, want)
				}
			}
		})
	}
}
