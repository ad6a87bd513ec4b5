package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/opsrunner/opsrunner/store"
	"github.com/spf13/cobra"
)

func newDeadLetters() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deadletters [list|show|replay|rm]",
		Short: "List dead letters, show one with its body and headers, replay it or remove it",
		Long: `A dead letter is a message that failed more often than its listener's
redelivery policy allows: the agent put a copy on the dead-letter
destination and recorded it. Replay sends it back to its original
destination (and removes the record); rm drops the record.`,
		Example: `  opsrunner deadletters
  opsrunner deadletters list --listener orders/orders-in
  opsrunner deadletters show 01JD...
  opsrunner deadletters replay 01JD...
  opsrunner deadletters rm 01JD...`,
		Args: cobra.NoArgs,
	}
	list := newDeadLettersList()
	cmd.Flags().AddFlagSet(list.Flags())
	cmd.PreRunE, cmd.RunE = list.PreRunE, list.RunE
	cmd.AddCommand(list, newDeadLettersShow(), newDeadLettersReplay(), newDeadLettersRm())
	return cmd
}

func newDeadLettersList() *cobra.Command {
	var listener string
	cmd := &cobra.Command{Use: "list", Short: "List dead letters, newest first", Args: cobra.NoArgs}
	o := addOutput(cmd)
	cmd.Flags().StringVar(&listener, "listener", "", "only the dead letters of listener `ID` (project/listener)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		path := apiPath("deadletters")
		if listener != "" {
			path += "?listener=" + url.QueryEscape(listener)
		}
		data, err := newClient(cmd).send(cmd.Context(), http.MethodGet, path, "", nil)
		if err != nil {
			return err
		}
		var out struct{ DeadLetters []store.DeadLetter }
		if err := json.Unmarshal(data, &out); err != nil {
			return fmt.Errorf("read dead letters: %w", err)
		}
		return o.print(cmd, data, func(w io.Writer) {
			fmt.Fprintln(w, "ID\tLISTENER\tDESTINATION\tATTEMPTS\tFAILED\tERROR")
			for _, d := range out.DeadLetters {
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.Listener, d.Destination, d.Attempts, d.FailedAt.Local().Format(time.DateTime), firstLine(d.Error))
			}
		})
	}
	return cmd
}

func newDeadLettersShow() *cobra.Command {
	cmd := &cobra.Command{Use: "show ID", Short: "Show a dead letter: why it failed, its headers and body", Args: cobra.ExactArgs(1)}
	o := addOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		data, err := newClient(cmd).send(cmd.Context(), http.MethodGet, apiPath("deadletters", args[0]), "", nil)
		if err != nil {
			return err
		}
		var d store.DeadLetter
		if err := json.Unmarshal(data, &d); err != nil {
			return fmt.Errorf("read dead letter: %w", err)
		}
		if o.json() {
			return writeJSON(cmd.OutOrStdout(), data)
		}
		return deadLetterText(cmd.OutOrStdout(), d)
	}
	return cmd
}

// deadLetterText prints d's fields and headers in columns, then its body
// as it is.
func deadLetterText(out io.Writer, d store.DeadLetter) error {
	w := newTable(out)
	for _, f := range [][2]string{
		{"id", d.ID}, {"project", d.Project}, {"listener", d.Listener}, {"message", d.MessageID},
		{"destination", d.Destination}, {"dead-letter destination", d.DeadLetterDestination},
		{"attempts", fmt.Sprint(d.Attempts)}, {"failed", d.FailedAt.Local().Format(time.DateTime)},
		{"agent", d.Agent}, {"error", d.Error},
	} {
		if f[1] != "" {
			fmt.Fprintf(w, "%s:\t%s\n", f[0], f[1])
		}
	}
	fmt.Fprintln(w, "headers:")
	for _, k := range slices.Sorted(maps.Keys(d.Headers)) {
		fmt.Fprintf(w, "  %s:\t%s\n", k, d.Headers[k])
	}
	if err := w.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(out, "body:\n%s\n", d.Body)
	return err
}

func newDeadLettersReplay() *cobra.Command {
	cmd := &cobra.Command{Use: "replay ID", Short: "Send a dead letter back to its original destination and remove its record", Args: cobra.ExactArgs(1)}
	o := addOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		data, err := newClient(cmd).send(cmd.Context(), http.MethodPost, apiPath("deadletters", args[0], "replay"), "", nil)
		if err != nil {
			return err
		}
		return o.print(cmd, data, func(w io.Writer) { fmt.Fprintf(w, "replayed dead letter %s\n", args[0]) })
	}
	return cmd
}

func newDeadLettersRm() *cobra.Command {
	cmd := &cobra.Command{Use: "rm ID", Short: "Remove a dead letter's record without replaying it", Args: cobra.ExactArgs(1)}
	o := addOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if _, err := newClient(cmd).send(cmd.Context(), http.MethodDelete, apiPath("deadletters", args[0]), "", nil); err != nil {
			return err
		}
		return o.print(cmd, map[string]string{"id": args[0], "status": "removed"}, func(w io.Writer) {
			fmt.Fprintf(w, "removed dead letter %s\n", args[0])
		})
	}
	return cmd
}
