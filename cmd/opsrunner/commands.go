package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
	"github.com/spf13/cobra"
)

func newDeploy() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "deploy DIR",
		Short: "Deploy a project folder (opsrunner.yaml at its root) as a new version",
		Example: `  opsrunner deploy samples/hello
  opsrunner deploy ./orders --server http://agent:8080`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bundle, err := scripts.BundleDir(args[0])
			if err != nil {
				return err
			}
			if name == "" {
				if name, err = projectName(args[0]); err != nil {
					return err
				}
			}
			c := newClient(cmd)
			_, data, err := c.do(cmd.Context(), http.MethodPut, "/api/v1/projects/"+url.PathEscape(name), "application/gzip", bytes.NewReader(bundle), nil)
			if err != nil {
				return err
			}
			var v store.ProjectVersion
			if err := json.Unmarshal(data, &v); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deployed %s version %d\n", v.Project, v.Version)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "project", "", "project name (default: the manifest's `project`)")
	return cmd
}

// projectName reads the `project` key of DIR/opsrunner.yaml.
func projectName(dir string) (string, error) {
	data, err := os.ReadFile(dir + "/opsrunner.yaml")
	if err != nil {
		return "", fmt.Errorf("%s is not a project folder: %w", dir, err)
	}
	m, err := scripts.ParseManifest(data)
	if err != nil {
		return "", err
	}
	return m.Project, nil
}

func newInvoke() *cobra.Command {
	var data string
	var async bool
	var key string
	var headers []string
	cmd := &cobra.Command{
		Use:   "invoke PROJECT/PATH",
		Short: "Call a webhook and print its answer",
		Example: `  opsrunner invoke hello/hello --data '{"name":"Ada"}'
  opsrunner invoke orders/orders --data @order.json --async`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			project, path, ok := strings.Cut(args[0], "/")
			if !ok || project == "" || path == "" {
				return fmt.Errorf("want PROJECT/PATH, got %q", args[0])
			}
			body, err := readData(data)
			if err != nil {
				return err
			}
			h := http.Header{}
			if async {
				h.Set("Prefer", "respond-async")
			}
			if key != "" {
				h.Set("Idempotency-Key", key)
			}
			for _, kv := range headers {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return fmt.Errorf("--header wants k=v, got %q", kv)
				}
				h.Add(k, v)
			}
			// A body that is not JSON goes as text: the agent refuses
			// malformed JSON sent as application/json.
			contentType := "application/json"
			if len(body) > 0 && !json.Valid(body) {
				contentType = "text/plain; charset=utf-8"
			}
			c := newClient(cmd)
			resp, out, err := c.do(cmd.Context(), http.MethodPost, "/hooks/"+url.PathEscape(project)+"/"+url.PathEscape(path), contentType, bytes.NewReader(body), h)
			if err != nil {
				return err
			}
			if async {
				fmt.Fprintf(cmd.OutOrStdout(), "queued run %s (%s)\n", resp.Header.Get("X-Opsrunner-Run"), resp.Header.Get("Location"))
				return nil
			}
			printJSON(cmd.OutOrStdout(), out)
			return nil
		},
	}
	cmd.Flags().StringVar(&data, "data", "", "request body: JSON text, or @file")
	cmd.Flags().BoolVar(&async, "async", false, "queue the run (Prefer: respond-async) and print its id")
	cmd.Flags().StringVar(&key, "idempotency-key", "", "Idempotency-Key header")
	cmd.Flags().StringArrayVar(&headers, "header", nil, "extra header k=v (repeatable)")
	return cmd
}

func readData(s string) ([]byte, error) {
	if name, ok := strings.CutPrefix(s, "@"); ok {
		return os.ReadFile(name)
	}
	return []byte(s), nil
}

func newRuns() *cobra.Command {
	var operation, status, messageID, outcome string
	var limit int
	var follow bool
	cmd := &cobra.Command{
		Use:   "runs [RUN-ID]",
		Short: "List recent runs, or show one",
		Example: `  opsrunner runs
  opsrunner runs --status failed
  opsrunner runs --outcome dead_lettered
  opsrunner runs --follow
  opsrunner runs 01JD...`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := newClient(cmd)
			if len(args) == 1 {
				_, data, err := c.do(cmd.Context(), http.MethodGet, "/api/v1/runs/"+url.PathEscape(args[0]), "", nil, nil)
				if err != nil {
					return err
				}
				printJSON(cmd.OutOrStdout(), data)
				return nil
			}
			q := url.Values{}
			for k, v := range map[string]string{"operation": operation, "status": status, "messageId": messageID, "outcome": outcome} {
				if v != "" {
					q.Set(k, v)
				}
			}
			q.Set("limit", fmt.Sprint(limit))
			seen := map[string]string{}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tPROJECT\tOPERATION\tTRIGGER\tSTATUS\tOUTCOME\tMS\tSTARTED\tERROR")
			for {
				var page struct{ Runs []store.Run }
				if err := c.getJSON(cmd.Context(), "/api/v1/runs?"+q.Encode(), &page); err != nil {
					return err
				}
				for i := len(page.Runs) - 1; i >= 0; i-- {
					r := page.Runs[i]
					if seen[r.ID] == r.Status {
						continue
					}
					seen[r.ID] = r.Status
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t%s\n", r.ID, r.Project, r.Operation, r.Trigger, r.Status, r.Outcome, r.DurationMs, r.StartedAt.Local().Format(time.TimeOnly), firstLine(r.Error))
				}
				w.Flush()
				if !follow {
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(time.Second):
				}
			}
		},
	}
	cmd.Flags().StringVar(&operation, "operation", "", "only runs of this operation")
	cmd.Flags().StringVar(&status, "status", "", "only runs with this status (running, succeeded, failed, timed_out)")
	cmd.Flags().StringVar(&messageID, "message-id", "", "only runs of this broker message")
	cmd.Flags().StringVar(&outcome, "outcome", "", "only runs of deliveries settled so (committed, rolled_back, dead_lettered, skipped_duplicate, refused)")
	cmd.Flags().IntVar(&limit, "limit", 20, "how many runs")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new runs until interrupted")
	return cmd
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

func newListeners() *cobra.Command {
	var q string
	cmd := &cobra.Command{
		Use:   "listeners [list|enable|disable] [LISTENER-ID [OPERATION]]",
		Short: "List listeners, or turn a listener or one of its operations on or off",
		Example: `  opsrunner listeners --q orders
  opsrunner listeners disable orders/orders-in
  opsrunner listeners enable orders/orders-in "Process Order"`,
		Args: cobra.MaximumNArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := newClient(cmd)
			verb := "list"
			if len(args) > 0 {
				verb = args[0]
			}
			switch verb {
			case "list":
				var out struct {
					Listeners []struct {
						ID, Destination, Status string
						Enabled                 bool
						Operations              []struct {
							Name    string
							Enabled bool
						}
					}
				}
				if err := c.getJSON(cmd.Context(), "/api/v1/listeners?q="+url.QueryEscape(q), &out); err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
				fmt.Fprintln(w, "LISTENER\tDESTINATION\tSTATUS")
				for _, l := range out.Listeners {
					fmt.Fprintf(w, "%s\t%s\t%s\n", l.ID, l.Destination, l.Status)
					for _, op := range l.Operations {
						fmt.Fprintf(w, "  └ %s\t\t%s\n", op.Name, onOff(op.Enabled))
					}
				}
				return w.Flush()
			case "enable", "disable":
				if len(args) < 2 {
					return fmt.Errorf("%s needs a LISTENER-ID (project/listener)", verb)
				}
				path := "/api/v1/listeners/" + url.PathEscape(args[1])
				if len(args) == 3 {
					path += "/operations/" + url.PathEscape(args[2])
				}
				body := fmt.Sprintf(`{"enabled": %t}`, verb == "enable")
				if _, _, err := c.do(cmd.Context(), http.MethodPut, path+"/state", "application/json", strings.NewReader(body), nil); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%sd %s\n", verb, strings.Join(args[1:], " → "))
				return nil
			default:
				return fmt.Errorf("unknown listeners command %q (list, enable, disable)", verb)
			}
		},
	}
	cmd.Flags().StringVar(&q, "q", "", "filter by activity, operation or status (case-insensitive)")
	return cmd
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func newMembers() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "members",
		Short: "Show cluster members, leader, quorum, and runs in progress and stuck per agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, data, err := newClient(cmd).do(cmd.Context(), http.MethodGet, "/api/v1/cluster/members", "", nil, nil)
			if err != nil {
				return err
			}
			switch output {
			case "json":
				printJSON(cmd.OutOrStdout(), data)
				return nil
			case "table":
				return printMembers(cmd, data)
			default:
				return fmt.Errorf("unknown output %q (table, json)", output)
			}
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

// membersView is what printMembers reads of GET /api/v1/cluster/members.
type membersView struct {
	Leader          string
	LeaderNodeState string
	Redis           string
	Quorum          struct {
		Size, Required, Live int
		OK                   bool
	}
	Members []struct {
		ID, Address, Version                   string
		Capacity, InFlight, Running, StuckRuns int
		Leader                                 bool
		LastSeen                               time.Time
	}
}

// printMembers prints the leader and quorum, then a table of the agents:
// STUCK counts runs past their time limit plus a grace, which hold a worker.
func printMembers(cmd *cobra.Command, data []byte) error {
	var v membersView
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("read members: %w", err)
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "leader: %s (%s)  quorum: %d of %d live, %d required\n", v.Leader, v.LeaderNodeState, v.Quorum.Live, v.Quorum.Size, v.Quorum.Required)
	if v.Redis != "" {
		fmt.Fprintf(out, "redis: %s\n", v.Redis)
	}
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "AGENT\tADDRESS\tLEADER\tWORKERS\tBUSY\tRUNNING\tSTUCK\tVERSION\tLAST SEEN")
	for _, m := range v.Members {
		leader := ""
		if m.Leader {
			leader = "*"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", m.ID, m.Address, leader, m.Capacity, m.InFlight, m.Running, m.StuckRuns, m.Version, m.LastSeen.Local().Format(time.TimeOnly))
	}
	return w.Flush()
}

func newVersion() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "opsrunner", agent.Version)
		},
	}
}
