package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/opsrunner/opsrunner/store"
	"github.com/spf13/cobra"
)

// runsOptions are the flags of `opsrunner runs`.
type runsOptions struct {
	project, operation, trigger, schedule, status, messageID, outcome string
	limit                                                             int
	follow, logs                                                      bool
	out                                                               *output
}

// pollEvery is how often --follow asks the agent again.
const pollEvery = time.Second

func newRuns() *cobra.Command {
	var o runsOptions
	cmd := &cobra.Command{
		Use:   "runs [RUN-ID]",
		Short: "List recent runs, follow new ones, or show one run (its chain and logs)",
		Example: `  opsrunner runs
  opsrunner runs --status failed --project orders
  opsrunner runs --outcome dead_lettered
  opsrunner runs --trigger listener --operation "Process Order"
  opsrunner runs --trigger schedule --project heartbeat --schedule beat
  opsrunner runs --follow
  opsrunner runs 01JD... 
  opsrunner runs 01JD... --logs -f`,
		Args: cobra.MaximumNArgs(1),
	}
	o.out = addOutput(cmd)
	f := cmd.Flags()
	f.StringVar(&o.project, "project", "", "only runs of project `NAME`")
	f.StringVar(&o.operation, "operation", "", "only runs of operation `NAME`")
	f.StringVar(&o.trigger, "trigger", "", "only runs started by `TRIGGER`: webhook, listener, operation or schedule")
	f.StringVar(&o.schedule, "schedule", "", "only runs of schedule `NAME`'s ticks (with --project when names repeat)")
	f.StringVar(&o.status, "status", "", "only runs in `STATUS`: running, succeeded, failed or timed_out")
	f.StringVar(&o.messageID, "message-id", "", "only runs of broker message `ID`")
	f.StringVar(&o.outcome, "outcome", "", "only runs of deliveries settled as `OUTCOME`: "+strings.Join(store.Outcomes(), ", "))
	f.IntVar(&o.limit, "limit", 20, "list at most `N` runs")
	f.BoolVarP(&o.follow, "follow", "f", false, "keep printing new and changed runs (with RUN-ID --logs: new log lines until the run ends)")
	f.BoolVar(&o.logs, "logs", false, "with RUN-ID: print only the run's log lines")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c := newClient(cmd)
		if len(args) == 1 {
			if o.logs {
				return o.printLogs(cmd, c, args[0])
			}
			return o.showRun(cmd, c, args[0])
		}
		if o.logs {
			return fmt.Errorf("--logs needs a RUN-ID")
		}
		return o.list(cmd, c)
	}
	return cmd
}

// query is the GET /api/v1/runs query of the filters.
func (o *runsOptions) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"project": o.project, "operation": o.operation, "trigger": o.trigger,
		"schedule": o.schedule, "status": o.status, "messageId": o.messageID, "outcome": o.outcome} {
		if v != "" {
			q.Set(k, v)
		}
	}
	q.Set("limit", fmt.Sprint(o.limit))
	return q
}

// list prints the runs the filters select, oldest first; with --follow it
// asks again every second and prints runs that are new or changed status,
// in columns that keep their width.
func (o *runsOptions) list(cmd *cobra.Command, c *client) error {
	path := "/api/v1/runs?" + o.query().Encode()
	seen := map[string]string{}
	var t *runTable
	for {
		var page struct{ Runs []store.Run }
		if err := c.getJSON(cmd.Context(), path, &page); err != nil {
			return err
		}
		var fresh []store.Run // newest first, as the API lists them
		for _, r := range page.Runs {
			if seen[r.ID] != r.Status {
				seen[r.ID] = r.Status
				fresh = append(fresh, r)
			}
		}
		if err := o.printRuns(cmd, &t, fresh); err != nil {
			return err
		}
		if !o.follow {
			return nil
		}
		select {
		case <-cmd.Context().Done():
			return nil
		case <-time.After(pollEvery):
		}
	}
}

// printRuns prints a batch of runs (newest first): a JSON page like the
// API's, or oldest first one JSON line per run when following, or rows
// of t, made from the first batch, oldest first.
func (o *runsOptions) printRuns(cmd *cobra.Command, t **runTable, runs []store.Run) error {
	out := cmd.OutOrStdout()
	if o.out.json() && !o.follow {
		if runs == nil {
			runs = []store.Run{}
		}
		return writeJSON(out, map[string]any{"runs": runs})
	}
	if *t == nil && !o.out.json() {
		*t = newRunTable(runs)
		(*t).header(out)
	}
	enc := json.NewEncoder(out)
	for i := len(runs) - 1; i >= 0; i-- {
		if !o.out.json() {
			(*t).row(out, runs[i])
		} else if err := enc.Encode(runs[i]); err != nil {
			return err
		}
	}
	return nil
}

// showRun prints one run: its fields, the chain's steps, its logs.
func (o *runsOptions) showRun(cmd *cobra.Command, c *client, id string) error {
	data, err := c.send(cmd.Context(), http.MethodGet, apiPath("runs", id), "", nil)
	if err != nil {
		return err
	}
	var r store.Run
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("read run: %w", err)
	}
	return o.out.print(cmd, data, func(w io.Writer) { runText(w, r) })
}

func runText(w io.Writer, r store.Run) {
	field := func(k string, v any) {
		if s := fmt.Sprint(v); s != "" && s != "0" {
			fmt.Fprintf(w, "%s:\t%s\n", k, s)
		}
	}
	field("run", r.ID)
	project := r.Project
	if r.Version > 0 {
		project += fmt.Sprintf(" (version %d)", r.Version)
	}
	field("project", project)
	field("operation", r.Operation)
	field("trigger", r.Trigger)
	field("status", r.Status)
	field("outcome", r.Outcome)
	field("listener", r.Listener)
	field("message", r.MessageID)
	field("attempt", r.Attempt)
	field("agent", r.Agent)
	field("started", r.StartedAt.Local().Format(time.DateTime+".000"))
	field("duration", fmt.Sprintf("%.2f ms", r.DurationMs))
	field("http status", r.HTTPStatus)
	field("parent run", r.ParentRunID)
	field("error", r.Error)
	if len(r.Result) > 0 {
		field("result", string(r.Result))
	}
	if len(r.Chain) > 0 {
		fmt.Fprintln(w, "chain:")
		for _, s := range r.Chain {
			fmt.Fprintf(w, "  %s\t%s\t%.2f ms\t%s\n", s.Operation, s.Status, s.DurationMs, firstLine(s.Error))
		}
	}
	if len(r.Logs) > 0 {
		fmt.Fprintln(w, "logs:")
		for _, l := range r.Logs {
			logLine(w, "  ", l)
		}
	}
}

func logLine(w io.Writer, indent string, l store.LogLine) {
	fmt.Fprintf(w, "%s%s %-5s %s\n", indent, l.Time.Local().Format(time.TimeOnly+".000"), l.Level, l.Message)
}

// printLogs prints a run's log lines; with --follow it asks again every
// second and prints new lines until the run is no longer running.
func (o *runsOptions) printLogs(cmd *cobra.Command, c *client, id string) error {
	out := cmd.OutOrStdout()
	printed := 0
	for {
		var r store.Run
		if err := c.getJSON(cmd.Context(), apiPath("runs", id), &r); err != nil {
			return err
		}
		for _, l := range r.Logs[min(printed, len(r.Logs)):] {
			if o.out.json() {
				if err := json.NewEncoder(out).Encode(l); err != nil {
					return err
				}
			} else {
				logLine(out, "", l)
			}
		}
		printed = max(printed, len(r.Logs))
		if !o.follow || r.Status != store.StatusRunning {
			return nil
		}
		if !sleep(cmd.Context(), pollEvery) {
			return nil
		}
	}
}

// sleep waits d; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// runTable prints runs in columns whose widths are fixed by the header
// and the first batch, so that rows printed later line up with them;
// a longer value later is cut with "…".
type runTable struct{ widths []int }

var runColumns = []string{"ID", "PROJECT", "OPERATION", "TRIGGER", "STATUS", "OUTCOME", "MS", "STARTED", "ERROR"}

func runCells(r store.Run) []string {
	return []string{r.ID, r.Project, r.Operation, r.Trigger, r.Status, r.Outcome,
		fmt.Sprintf("%.2f", r.DurationMs), r.StartedAt.Local().Format(time.TimeOnly), firstLine(r.Error)}
}

func newRunTable(first []store.Run) *runTable {
	// Room for what later runs usually hold: a ULID, the longest
	// trigger, status and outcome words, seconds of duration.
	t := &runTable{widths: []int{26, 8, 10, 9, 9, 17, 8, 8, 0}}
	for i, h := range runColumns {
		t.widths[i] = max(t.widths[i], len(h))
	}
	for _, r := range first {
		for i, cell := range runCells(r) {
			t.widths[i] = max(t.widths[i], len([]rune(cell)))
		}
	}
	t.widths[len(t.widths)-1] = 0 // the last column is not padded
	return t
}

func (t *runTable) header(w io.Writer) { t.line(w, runColumns) }

func (t *runTable) row(w io.Writer, r store.Run) { t.line(w, runCells(r)) }

func (t *runTable) line(w io.Writer, cells []string) {
	var b strings.Builder
	for i, cell := range cells {
		width := t.widths[i]
		if i == len(cells)-1 {
			b.WriteString(cell)
			break
		}
		rs := []rune(cell)
		if len(rs) > width {
			cell = string(rs[:width-1]) + "…"
		}
		b.WriteString(cell)
		b.WriteString(strings.Repeat(" ", width-len([]rune(cell))+2))
	}
	fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
}
