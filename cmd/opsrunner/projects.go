package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/opsrunner/opsrunner/store"
	"github.com/spf13/cobra"
)

func newProjects() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "projects [list|show|versions|rollback|delete]",
		Short: "List projects, show one, list its versions, roll it back or delete it",
		Example: `  opsrunner projects
  opsrunner projects show orders
  opsrunner projects versions orders
  opsrunner projects rollback orders              # to the version before the live one
  opsrunner projects rollback orders --version 3
  opsrunner projects delete orders --yes`,
		Args: cobra.NoArgs,
	}
	list := newProjectsList()
	cmd.Flags().AddFlagSet(list.Flags())
	cmd.PreRunE, cmd.RunE = list.PreRunE, list.RunE
	cmd.AddCommand(list, newProjectsShow(), newProjectsVersions(), newProjectsRollback(), newProjectsDelete())
	return cmd
}

// getProjects reads GET /api/v1/projects.
func getProjects(cmd *cobra.Command) ([]byte, []store.ProjectInfo, error) {
	data, err := newClient(cmd).send(cmd.Context(), http.MethodGet, apiPath("projects"), "", nil)
	if err != nil {
		return nil, nil, err
	}
	var out struct{ Projects []store.ProjectInfo }
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, nil, fmt.Errorf("read projects: %w", err)
	}
	return data, out.Projects, nil
}

// getProject reads GET /api/v1/projects/{project}.
func getProject(cmd *cobra.Command, project string) ([]byte, store.ProjectInfo, error) {
	var p store.ProjectInfo
	data, err := newClient(cmd).send(cmd.Context(), http.MethodGet, apiPath("projects", project), "", nil)
	if err != nil {
		return nil, p, err
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, p, fmt.Errorf("read project: %w", err)
	}
	return data, p, nil
}

// live is the project's live version, zero when it has none.
func live(p store.ProjectInfo) store.ProjectVersion {
	for _, v := range p.Versions {
		if v.Version == p.ActiveVersion {
			return v
		}
	}
	return store.ProjectVersion{}
}

func newProjectsList() *cobra.Command {
	cmd := &cobra.Command{Use: "list", Short: "List projects with their live version", Args: cobra.NoArgs}
	o := addOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		data, ps, err := getProjects(cmd)
		if err != nil {
			return err
		}
		return o.print(cmd, data, func(w io.Writer) {
			fmt.Fprintln(w, "PROJECT\tLIVE\tVERSIONS\tDEPLOYED")
			for _, p := range ps {
				fmt.Fprintf(w, "%s\t%d\t%d\t%s\n", p.Name, p.ActiveVersion, len(p.Versions), when(live(p).CreatedAt))
			}
		})
	}
	return cmd
}

func newProjectsShow() *cobra.Command {
	cmd := &cobra.Command{Use: "show PROJECT", Short: "Show a project: its live version and its listeners", Args: cobra.ExactArgs(1)}
	o := addOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		data, p, err := getProject(cmd, args[0])
		if err != nil {
			return err
		}
		if o.json() {
			return writeJSON(cmd.OutOrStdout(), data)
		}
		var ls struct{ Listeners []listenerView }
		if err := newClient(cmd).getJSON(cmd.Context(), apiPath("listeners"), &ls); err != nil {
			return err
		}
		return o.print(cmd, data, func(w io.Writer) {
			v := live(p)
			fmt.Fprintf(w, "project:\t%s\n", p.Name)
			fmt.Fprintf(w, "live version:\t%d (of %d), deployed %s\n", p.ActiveVersion, len(p.Versions), when(v.CreatedAt))
			if v.Note != "" {
				fmt.Fprintf(w, "note:\t%s\n", v.Note)
			}
			for _, l := range ls.Listeners {
				if projectOf(l.ID) == p.Name {
					fmt.Fprintf(w, "listener:\t%s\t%s\t%s\n", l.ID, l.Destination, l.Status)
				}
			}
		})
	}
	return cmd
}

// projectOf is the project of a listener id (project/listener).
func projectOf(listenerID string) string {
	project, _, _ := strings.Cut(listenerID, "/")
	return project
}

func newProjectsVersions() *cobra.Command {
	cmd := &cobra.Command{Use: "versions PROJECT", Short: "List a project's versions, the live one marked", Args: cobra.ExactArgs(1)}
	o := addOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		_, p, err := getProject(cmd, args[0])
		if err != nil {
			return err
		}
		return o.print(cmd, map[string]any{"project": p.Name, "activeVersion": p.ActiveVersion, "versions": p.Versions}, func(w io.Writer) {
			fmt.Fprintln(w, "VERSION\tLIVE\tDEPLOYED\tSIZE\tNOTE")
			for _, v := range p.Versions {
				mark := ""
				if v.Version == p.ActiveVersion {
					mark = "*"
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%d\t%s\n", v.Version, mark, when(v.CreatedAt), v.Size, v.Note)
			}
		})
	}
	return cmd
}

func newProjectsRollback() *cobra.Command {
	var version int
	cmd := &cobra.Command{
		Use:   "rollback PROJECT",
		Short: "Make an earlier version live again (default: the one before the live version)",
		Args:  cobra.ExactArgs(1),
	}
	o := addOutput(cmd)
	cmd.Flags().IntVar(&version, "version", 0, "make version `N` live (default: the version before the live one)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if version == 0 {
			_, p, err := getProject(cmd, args[0])
			if err != nil {
				return err
			}
			if version = previous(p); version == 0 {
				return fmt.Errorf("project %s has no version before the live one (%d)", p.Name, p.ActiveVersion)
			}
		}
		body := fmt.Sprintf(`{"version": %d}`, version)
		data, err := newClient(cmd).send(cmd.Context(), http.MethodPost, apiPath("projects", args[0], "rollback"), "application/json", []byte(body))
		if err != nil {
			return err
		}
		return o.print(cmd, data, func(w io.Writer) { fmt.Fprintf(w, "rolled back %s: version %d is live\n", args[0], version) })
	}
	return cmd
}

// previous is the version stored before p's live one, 0 when none is.
func previous(p store.ProjectInfo) int {
	prev := 0
	for _, v := range p.Versions {
		if v.Version < p.ActiveVersion {
			prev = max(prev, v.Version)
		}
	}
	return prev
}

func newProjectsDelete() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete PROJECT --yes",
		Short: "Delete a project: every version; its webhooks and listeners stop on every agent",
		Long: `Delete removes every version of a project. Its webhooks answer 404 and its
listeners stop on every agent (runs in flight finish; messages wait on the
broker). Its run history, dead letters and secrets are kept. It asks for
--yes, as it cannot be undone.`,
		Args: cobra.ExactArgs(1),
	}
	o := addOutput(cmd)
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm the deletion")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if !yes {
			return fmt.Errorf("deleting project %s removes all its versions and cannot be undone; add --yes to confirm", args[0])
		}
		if _, err := newClient(cmd).send(cmd.Context(), http.MethodDelete, apiPath("projects", args[0]), "", nil); err != nil {
			return err
		}
		return o.print(cmd, map[string]string{"project": args[0], "status": "deleted"}, func(w io.Writer) {
			fmt.Fprintf(w, "deleted project %s\n", args[0])
		})
	}
	return cmd
}

// when is a time for people: local, to the second; "-" for none.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}
