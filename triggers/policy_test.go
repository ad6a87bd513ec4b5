package triggers

import (
	"testing"

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
