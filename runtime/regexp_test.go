package runtime

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A pattern with a backreference backtracks in regexp2, which no interrupt
// reaches: the match is abandoned after maxRegexpMatch, and the run, whose
// timeout has passed meanwhile, ends timed_out instead of holding its
// worker for minutes.
func TestBacktrackingRegexpEndsWithItsRun(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{NoPrewarm: true, Runtimes: 1})
	p := newProject(t, "p", op{name: "op", timeout: 200 * time.Millisecond,
		src: `function handle() { return /(a+)+\1c/.test("a".repeat(32) + "b") }`})
	done := make(chan Result, 1)
	go func() { done <- e.Run(context.Background(), Invocation{Project: p, Operation: "op"}) }()
	select {
	case res := <-done:
		if res.Status != "timed_out" || !errors.Is(res.Err, ErrTimeout) {
			t.Fatalf("status %s, err %v; want timed_out", res.Status, res.Err)
		}
	case <-time.After(maxRegexpMatch + 10*time.Second):
		t.Fatal("the run still holds its worker well past the regexp bound")
	}
}
