package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
	"github.com/spf13/cobra"
)

// deployResult is one folder's deploy, as -o json lists them.
type deployResult struct {
	Dir     string `json:"dir"`
	Project string `json:"project,omitempty"`
	Version int    `json:"version,omitempty"`
	Error   string `json:"error,omitempty"`
}

func newDeploy() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "deploy DIR...",
		Short: "Deploy project folders (opsrunner.yaml at the root of each) as new versions",
		Long: `Deploy uploads each folder as a new version of its project (the manifest's
project key, or --project for a single folder). Every folder is reported;
a folder that fails (with file:line:col for script and manifest errors)
does not stop the others, and the command then exits non-zero.`,
		Example: `  opsrunner deploy samples/hello
  opsrunner deploy samples/*
  opsrunner deploy ./orders --project orders-test --server http://agent:8080`,
		Args: cobra.MinimumNArgs(1),
	}
	o := addOutput(cmd)
	cmd.Flags().StringVar(&name, "project", "", "deploy as project `NAME` (one folder only; default: the manifest's project key)")
	cmd.RunE = func(cmd *cobra.Command, dirs []string) error {
		if name != "" && len(dirs) > 1 {
			return fmt.Errorf("--project names one project; %d folders given", len(dirs))
		}
		c := newClient(cmd)
		var results []deployResult
		var errs []error
		for _, dir := range dirs {
			r, err := deployDir(cmd, c, dir, name)
			results = append(results, r)
			switch {
			case err != nil:
				errs = append(errs, err)
				if len(dirs) > 1 && !o.json() {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %v\n", dir, err)
				}
			case !o.json():
				fmt.Fprintf(cmd.OutOrStdout(), "deployed %s version %d\n", r.Project, r.Version)
			}
		}
		if o.json() {
			if err := writeJSON(cmd.OutOrStdout(), map[string]any{"deploys": results}); err != nil {
				return err
			}
		}
		switch {
		case len(errs) == 0:
			return nil
		case len(dirs) == 1:
			return errs[0]
		}
		return fmt.Errorf("%d of %d folders failed to deploy", len(errs), len(dirs))
	}
	return cmd
}

// deployDir deploys one folder. On failure the result holds the error's
// text too (the API's message and located problems), for -o json.
func deployDir(cmd *cobra.Command, c *client, dir, name string) (deployResult, error) {
	r := deployResult{Dir: dir, Project: name}
	fail := func(err error) (deployResult, error) { r.Error = err.Error(); return r, err }
	bundle, err := scripts.BundleDir(dir)
	if err != nil {
		return fail(err)
	}
	if r.Project == "" {
		if r.Project, err = projectName(dir); err != nil {
			return fail(err)
		}
	}
	data, err := c.send(cmd.Context(), http.MethodPut, apiPath("projects", r.Project), "application/gzip", bundle)
	if err != nil {
		return fail(err)
	}
	var v store.ProjectVersion
	if err := json.Unmarshal(data, &v); err != nil {
		return fail(fmt.Errorf("read deploy answer: %w", err))
	}
	r.Version = v.Version
	return r, nil
}

// projectName reads the `project` key of DIR/opsrunner.yaml.
func projectName(dir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "opsrunner.yaml"))
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
	}
	o := addOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		project, path, ok := strings.Cut(args[0], "/")
		if !ok || project == "" || path == "" {
			return fmt.Errorf("want PROJECT/PATH, got %q", args[0])
		}
		body, err := readData(data)
		if err != nil {
			return err
		}
		h, err := invokeHeaders(async, key, headers)
		if err != nil {
			return err
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
			queued := map[string]string{"runId": resp.Header.Get("X-Opsrunner-Run"), "location": resp.Header.Get("Location")}
			return o.print(cmd, queued, func(w io.Writer) {
				fmt.Fprintf(w, "queued run %s (%s)\n", queued["runId"], queued["location"])
			})
		}
		printJSON(cmd.OutOrStdout(), out) // the webhook's answer, JSON or not, whatever -o says
		return nil
	}
	cmd.Flags().StringVar(&data, "data", "", "request body: `JSON` text, or @FILE")
	cmd.Flags().BoolVar(&async, "async", false, "queue the run (Prefer: respond-async) and print its id")
	cmd.Flags().StringVar(&key, "idempotency-key", "", "Idempotency-Key header `KEY`")
	cmd.Flags().StringArrayVar(&headers, "header", nil, "extra header `K=V` (repeatable)")
	return cmd
}

// invokeHeaders are the headers of an invoke: Prefer, Idempotency-Key and
// the --header ones.
func invokeHeaders(async bool, key string, headers []string) (http.Header, error) {
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
			return nil, fmt.Errorf("--header wants k=v, got %q", kv)
		}
		h.Add(k, v)
	}
	return h, nil
}

func readData(s string) ([]byte, error) {
	if name, ok := strings.CutPrefix(s, "@"); ok {
		return os.ReadFile(name)
	}
	return []byte(s), nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func newMembers() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "members",
		Short: "Show cluster members, leader, quorum, and runs in progress and stuck per agent",
		Args:  cobra.NoArgs,
	}
	o := addOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		data, err := newClient(cmd).send(cmd.Context(), http.MethodGet, apiPath("cluster", "members"), "", nil)
		if err != nil {
			return err
		}
		var v membersView
		if err := json.Unmarshal(data, &v); err != nil {
			return fmt.Errorf("read members: %w", err)
		}
		return o.print(cmd, data, v.text)
	}
	return cmd
}

// membersView is what the text of members reads of GET /api/v1/cluster/members.
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

// text prints the leader and quorum, then a table of the agents: STUCK
// counts runs past their time limit plus a grace, which hold a worker.
func (v membersView) text(w io.Writer) {
	fmt.Fprintf(w, "leader: %s (%s)  quorum: %d of %d live, %d required\n", v.Leader, v.LeaderNodeState, v.Quorum.Live, v.Quorum.Size, v.Quorum.Required)
	if v.Redis != "" {
		fmt.Fprintf(w, "redis: %s\n", v.Redis)
	}
	fmt.Fprintln(w, "AGENT\tADDRESS\tLEADER\tWORKERS\tBUSY\tRUNNING\tSTUCK\tVERSION\tLAST SEEN")
	for _, m := range v.Members {
		leader := ""
		if m.Leader {
			leader = "*"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", m.ID, m.Address, leader, m.Capacity, m.InFlight, m.Running, m.StuckRuns, m.Version, m.LastSeen.Local().Format(time.TimeOnly))
	}
}
