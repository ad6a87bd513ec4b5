package triggers_test

import (
	"maps"
	"reflect"
	"testing"

	"github.com/opsrunner/opsrunner/triggers"
)

// A message's headers keep the frame's order and, for a name that repeats,
// its first value (STOMP 1.2: "only the first header entry SHOULD be
// used"). Without repeats they are the frame's own slice, not a copy.
func TestHeadersOf(t *testing.T) {
	for _, tt := range []struct {
		name  string
		frame []string
		want  triggers.Headers
	}{
		{"none", nil, triggers.Headers{}},
		{"distinct", []string{"a", "1", "b", "2"}, triggers.Headers{"a", "1", "b", "2"}},
		{"repeated", []string{"a", "1", "b", "2", "a", "3", "b", "4", "c", "5"}, triggers.Headers{"a", "1", "b", "2", "c", "5"}},
		{"repeated at once", []string{"a", "1", "a", "2"}, triggers.Headers{"a", "1"}},
		{"a dangling name", []string{"a", "1", "b"}, triggers.Headers{"a", "1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := triggers.HeadersOf(tt.frame)
			if len(h) != len(tt.want) || (len(h) > 0 && !reflect.DeepEqual(h, tt.want)) {
				t.Fatalf("HeadersOf(%q) = %q, want %q", tt.frame, h, tt.want)
			}
			if h.Len() != len(tt.want)/2 {
				t.Fatalf("Len = %d", h.Len())
			}
			all := maps.Collect(h.All())
			for i := 0; i < len(tt.want); i += 2 {
				if got := h.Get(tt.want[i]); got != tt.want[i+1] {
					t.Fatalf("Get(%q) = %q, want %q", tt.want[i], got, tt.want[i+1])
				}
				if all[tt.want[i]] != tt.want[i+1] {
					t.Fatalf("All: %v", all)
				}
			}
			if len(all) != h.Len() {
				t.Fatalf("All yields %d headers, want %d", len(all), h.Len())
			}
			if h.Get("missing") != "" {
				t.Fatal("Get of a missing name is not empty")
			}
		})
	}
	frame := []string{"a", "1", "b", "2"}
	if h := triggers.HeadersOf(frame); &h[0] != &frame[0] {
		t.Fatal("headers without repeats were copied")
	}
}
