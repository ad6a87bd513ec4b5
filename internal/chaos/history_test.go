package chaos

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// The run history's outcomes, as the Contract spells them.
const (
	outcomeCommitted        = "committed"
	outcomeRolledBack       = "rolled_back"
	outcomeSkippedDuplicate = "skipped_duplicate"
	outcomeRefused          = "refused"
	statusSucceeded         = "succeeded"
)

// checkHistory reads the chaos project's run history and checks that no
// operation ran again for a message after a run of it committed, nor after
// it succeeded and was rolled back with its sibling's planned failure; it
// logs how often each operation ran per message and returns the takeover
// figures of the storm's kills. The history is what Redis holds: agents
// keep their runs there, not in their data directories, so a kill loses
// none (a killed agent's run stays running, or is ended as interrupted
// when it restarts), but Redis keeps nothing across its restart: only the
// runs since then are checked.
func checkHistory(t *testing.T, a *agentProc, s *storm) takeoverFigures {
	t.Helper()
	runs, err := allRuns(a, "project=chaos")
	if err != nil {
		t.Errorf("read the run history: %v", err)
		return takeoverFigures{}
	}
	outcomes, retried, planned := map[string]int{}, 0, 0
	for _, r := range runs {
		outcomes[r.Outcome]++
		if r.Attempt > 1 {
			retried++
		}
		if strings.Contains(r.Error, plannedFailure) && r.Operation == "flaky" {
			planned++
		}
	}
	t.Logf("run history: %d runs recorded since the Redis restart at %.1fs: outcomes %v, %d with attempt > 1, %d planned failures",
		len(runs), s.redisAt.Sub(s.start).Seconds(), outcomes, retried, planned)
	groups := runsByKey(runs)
	t.Logf("runs per message and operation: %s", runsPerMessage(groups))
	if v := ranAfterCommit(groups); len(v) > 0 {
		t.Errorf("%d operations ran again for a message after a run of them committed:\n  %s", len(v), strings.Join(head(v), "\n  "))
	}
	if v := reRanAfterSuccess(groups, plannedFailure); len(v) > 0 {
		t.Errorf("a redelivery re-ran %d operations that had succeeded, rolled back with their sibling's planned failure (issue 20):\n  %s",
			len(v), strings.Join(head(v), "\n  "))
	}
	since := 0
	for _, k := range s.kills {
		if k.at.After(s.redisAt) {
			since++
		}
	}
	f := takeovers(runs, s.kills, 20*time.Second) // the listeners' ackTimeout
	t.Logf("takeover after kill -9 (%d of %d kills since the Redis restart): %s\n  %s", since, len(s.kills), f, strings.Join(f.details, "\n  "))
	if f.max() > takeoverTarget {
		t.Logf("WARNING: SLOW TAKEOVER: a message held by a killed agent committed %s after the kill (target < %s, issue 20)",
			f.max().Round(time.Millisecond), takeoverTarget)
	}
	return f
}

// runsPerMessage says, per listener and operation, for how many messages
// it ran once, twice, ...: "chaos/pair steady ran 1× for 180, 2× for 20".
func runsPerMessage(groups map[runKey][]runView) string {
	hist := map[string]map[int]int{}
	for k, rs := range groups {
		name := k.listener + " " + k.operation
		if hist[name] == nil {
			hist[name] = map[int]int{}
		}
		hist[name][len(rs)]++
	}
	var lines []string
	for name, h := range hist {
		var parts []string
		for _, c := range slices.Sorted(maps.Keys(h)) {
			parts = append(parts, fmt.Sprintf("%d× for %d", c, h[c]))
		}
		lines = append(lines, name+" ran "+strings.Join(parts, ", "))
	}
	slices.Sort(lines)
	return strings.Join(lines, "; ")
}

// kill is one SIGKILL the chaos storm sent.
type kill struct {
	agent string
	at    time.Time
}

// runKey names what must settle once: one operation of one listener for
// one message (a retry copy keeps the original's message id).
type runKey struct {
	listener, message, operation string
}

func (k runKey) String() string {
	return fmt.Sprintf("%s message %s operation %s", k.listener, k.message, k.operation)
}

// executed reports whether the run executed its operation: a skipped
// duplicate or a refusal is recorded as a run that did not.
func executed(r runView) bool {
	return r.Outcome != outcomeSkippedDuplicate && r.Outcome != outcomeRefused
}

// runsByKey groups the runs that executed an operation by listener,
// message and operation, each group in the order the runs started.
func runsByKey(runs []runView) map[runKey][]runView {
	out := map[runKey][]runView{}
	for _, r := range runs {
		if r.MessageID == "" || !executed(r) {
			continue
		}
		k := runKey{r.Listener, r.MessageID, r.Operation}
		out[k] = append(out[k], r)
	}
	for _, rs := range out {
		slices.SortFunc(rs, func(a, b runView) int {
			if c := a.StartedAt.Compare(b.StartedAt); c != 0 {
				return c
			}
			return strings.Compare(a.ID, b.ID)
		})
	}
	return out
}

// ranAfterCommit lists the operations that ran again for a message after
// one of their runs had committed (a redelivery re-running an operation
// that already settled), one line each, sorted.
func ranAfterCommit(groups map[runKey][]runView) []string {
	var out []string
	for k, rs := range groups {
		for i, r := range rs {
			if r.Outcome != outcomeCommitted || r.FinishedAt == nil {
				continue
			}
			for _, later := range rs[i+1:] {
				if later.StartedAt.After(*r.FinishedAt) {
					out = append(out, fmt.Sprintf("%s: run %s committed on %s, then run %s on %s (attempt %d, %s %s)",
						k, r.ID, r.Agent, later.ID, later.Agent, later.Attempt, later.Status, later.Outcome))
					break
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// reRanAfterSuccess lists the operations that succeeded, were rolled back
// because another operation of the same delivery failed (their error names
// cause, the sibling's planned failure), and then ran again: the
// redelivery re-ran an operation that had succeeded. One line each, sorted.
func reRanAfterSuccess(groups map[runKey][]runView, cause string) []string {
	var out []string
	for k, rs := range groups {
		for i, r := range rs {
			if r.Status != statusSucceeded || r.Outcome != outcomeRolledBack || !strings.Contains(r.Error, cause) {
				continue
			}
			if i+1 < len(rs) {
				out = append(out, fmt.Sprintf("%s: run %s succeeded on attempt %d, rolled back (%s), ran again %d times",
					k, r.ID, r.Attempt, r.Error, len(rs)-i-1))
			}
		}
	}
	slices.Sort(out)
	return out
}

// takeoverFigures are the times from a kill to the commit, by any agent
// (the killed one too, once restarted), of each message the killed agent
// held in flight.
type takeoverFigures struct {
	times []time.Duration // sorted
	// unresolved counts held messages that no run started after the kill
	// committed in the history: committed just before the kill but not yet
	// recorded so, dead-lettered, or committed only by a run that ran
	// beside the killed one.
	unresolved int
	// details says, per held message, when it committed or what the
	// history shows of it instead; sorted.
	details []string
}

// max is the longest takeover, zero when none was measured.
func (f takeoverFigures) max() time.Duration {
	if len(f.times) == 0 {
		return 0
	}
	return f.times[len(f.times)-1]
}

// median is the middle takeover, zero when none was measured.
func (f takeoverFigures) median() time.Duration {
	if len(f.times) == 0 {
		return 0
	}
	return f.times[len(f.times)/2]
}

func (f takeoverFigures) String() string {
	return fmt.Sprintf("%d messages held at a kill: takeover max %s, median %s (target < %s); %d more without a later commit in the history",
		len(f.times), f.max().Round(time.Millisecond), f.median().Round(time.Millisecond), takeoverTarget, f.unresolved)
}

// heldMessage is one message a killed agent held in flight at kill k.
type heldMessage struct {
	listener, message string
	kill              int
}

// takeovers measures, for every message whose run a kill interrupted, the
// time from the kill to the last takeover (see takenOver) of the
// interrupted operations. An interrupted run is one that never settled (the agent died before it
// did; its restart records it as failed, "interrupted") that started on
// the killed agent at most window before the kill. A commit's time is
// its run's finishedAt: the commit follows it within milliseconds.
func takeovers(runs []runView, kills []kill, window time.Duration) takeoverFigures {
	last := map[heldMessage]time.Time{}
	lastHow := map[heldMessage]string{}
	unresolved := map[heldMessage]string{}
	for k, rs := range runsByKey(runs) {
		for i, r := range rs {
			if !interrupted(r) {
				continue
			}
			ki := killOf(kills, r, window)
			if ki < 0 {
				continue
			}
			h := heldMessage{k.listener, k.message, ki}
			at, how, ok := takenOver(rs[i+1:], kills[ki].at)
			if !ok {
				unresolved[h] += fmt.Sprintf(" %s %s, then %d runs;", k.operation, r.Status, len(rs)-i-1)
				continue
			}
			if at.After(last[h]) {
				last[h], lastHow[h] = at, how
			}
		}
	}
	var f takeoverFigures
	for h, at := range last {
		if _, ok := unresolved[h]; !ok {
			d := at.Sub(kills[h.kill].at)
			f.times = append(f.times, d)
			f.details = append(f.details, fmt.Sprintf("%s: %s %s after the kill", h.describe(kills), lastHow[h], d.Round(time.Millisecond)))
		}
	}
	for h, story := range unresolved {
		f.details = append(f.details, fmt.Sprintf("%s: not committed by a run started after the kill:%s", h.describe(kills), story))
	}
	slices.Sort(f.times)
	slices.Sort(f.details)
	f.unresolved = len(unresolved)
	return f
}

// describe names the kill and the message.
func (h heldMessage) describe(kills []kill) string {
	k := kills[h.kill]
	return fmt.Sprintf("kill -9 %s at %s, %s message %s", k.agent, k.at.Format("15:04:05.000"), h.listener, h.message)
}

// interrupted reports whether r never settled: it has no outcome, or its
// agent's restart ended it as interrupted.
func interrupted(r runView) bool {
	return r.Outcome == "" || strings.HasPrefix(r.Error, "interrupted")
}

// killOf returns the index of the first kill of r's agent at most window
// after r started, or -1.
func killOf(kills []kill, r runView, window time.Duration) int {
	for i, k := range kills {
		if k.agent == r.Agent && !k.at.Before(r.StartedAt) && k.at.Sub(r.StartedAt) <= window {
			return i
		}
	}
	return -1
}

// takenOver returns when the message of the runs rs, held by an agent
// killed at t, was taken over: the first of rs started after t — at its
// finishedAt when it committed, else at its start. A run that failed (a
// poison message, a planned failure) or was interrupted in turn still ran:
// its outcome is the operation's, not the takeover's (the next kill's
// takeover measures the rest); counting only commits would add the
// redelivery backoff of every failure to the takeover.
func takenOver(rs []runView, t time.Time) (at time.Time, how string, ok bool) {
	for _, r := range rs {
		switch {
		case !r.StartedAt.After(t):
		case interrupted(r):
			return r.StartedAt, "run again on " + r.Agent + ", interrupted in turn,", true
		case r.Outcome == outcomeCommitted && r.FinishedAt != nil:
			return *r.FinishedAt, "committed by " + r.Agent, true
		default:
			return r.StartedAt, "run again on " + r.Agent + " (" + r.Status + ", " + r.Outcome + ")", true
		}
	}
	return time.Time{}, "", false
}
