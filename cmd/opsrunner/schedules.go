package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newSchedules() *cobra.Command {
	var q, output string
	cmd := &cobra.Command{
		Use:   "schedules [list|enable|disable|run] [SCHEDULE-ID]",
		Short: "List schedules with their next run, turn one on or off, or run it now",
		Long: `Schedules run operations on a clock (cron or every), once per tick in the
cluster. Ids are project/schedule. "run" starts the schedule's operations
now, whatever its state, and prints the run ids.`,
		Example: `  opsrunner schedules --q nightly
  opsrunner schedules list -o json
  opsrunner schedules disable ops/heartbeat
  opsrunner schedules run ops/heartbeat`,
		Args: cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			verb := "list"
			if len(args) > 0 {
				verb = args[0]
			}
			switch verb {
			case "list":
				if len(args) > 1 {
					return fmt.Errorf("list takes no schedule id (filter with --q)")
				}
				return listSchedules(cmd, q, output)
			case "enable", "disable", "run":
				if len(args) < 2 {
					return fmt.Errorf("%s needs a SCHEDULE-ID (project/schedule)", verb)
				}
				return scheduleAction(cmd, verb, args[1])
			default:
				return fmt.Errorf("unknown schedules command %q (list, enable, disable, run)", verb)
			}
		},
	}
	cmd.Flags().StringVar(&q, "q", "", "filter by name, project, operation or status (case-insensitive)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func listSchedules(cmd *cobra.Command, q, output string) error {
	_, data, err := newClient(cmd).do(cmd.Context(), http.MethodGet, "/api/v1/schedules?q="+url.QueryEscape(q), "", nil, nil)
	if err != nil {
		return err
	}
	switch output {
	case "json":
		printJSON(cmd.OutOrStdout(), data)
		return nil
	case "table":
	default:
		return fmt.Errorf("unknown output %q (table, json)", output)
	}
	var out struct {
		Schedules []struct {
			ID, Status, Cron, Every, Timezone string
			NextRunAt                         *time.Time
			Operations                        []string
		}
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return err
	}
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SCHEDULE\tCLOCK\tSTATUS\tNEXT RUN\tOPERATIONS")
	for _, s := range out.Schedules {
		clock := s.Every
		if s.Cron != "" {
			clock = s.Cron + " (" + s.Timezone + ")"
		}
		next := "-"
		if s.NextRunAt != nil {
			next = s.NextRunAt.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", s.ID, clock, s.Status, next, strings.Join(s.Operations, ", "))
	}
	return w.Flush()
}

func scheduleAction(cmd *cobra.Command, verb, id string) error {
	c := newClient(cmd)
	path := "/api/v1/schedules/" + url.PathEscape(id)
	if verb == "run" {
		_, data, err := c.do(cmd.Context(), http.MethodPost, path+"/run", "", nil, nil)
		if err != nil {
			return err
		}
		var out struct{ Runs []string }
		if err := json.Unmarshal(data, &out); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "started %s: run %s\n", id, strings.Join(out.Runs, ", "))
		return nil
	}
	body := fmt.Sprintf(`{"enabled": %t}`, verb == "enable")
	if _, _, err := c.do(cmd.Context(), http.MethodPut, path+"/state", "application/json", strings.NewReader(body), nil); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%sd %s\n", verb, id)
	return nil
}
