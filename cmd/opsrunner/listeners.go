package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
)

// listenerView is what the CLI reads of the API's listener shape.
type listenerView struct {
	ID, Destination, Status string
	Enabled                 bool
	Operations              []struct {
		Name    string
		Enabled bool
	}
}

func newListeners() *cobra.Command {
	var q string
	cmd := &cobra.Command{
		Use:   "listeners [list|enable|disable] [LISTENER-ID [OPERATION]]",
		Short: "List listeners, or turn a listener or one of its operations on or off",
		Long: `Listeners are named PROJECT/LISTENER. Disabling a listener turns its
operations off too; enabling it leaves them as they are, so after a
disable, enable the operations as well (the command says which are off).`,
		Example: `  opsrunner listeners --q orders
  opsrunner listeners disable orders/orders-in
  opsrunner listeners enable orders/orders-in
  opsrunner listeners enable orders/orders-in "Process Order"`,
		Args: cobra.MaximumNArgs(3),
	}
	o := addOutput(cmd)
	cmd.Flags().StringVar(&q, "q", "", "only listeners whose activity, operation or status holds `TEXT` (case-insensitive)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		verb := "list"
		if len(args) > 0 {
			verb = args[0]
		}
		switch verb {
		case "list":
			return listListeners(cmd, o, q)
		case "enable", "disable":
			if len(args) < 2 {
				return fmt.Errorf("%s needs a LISTENER-ID (project/listener)", verb)
			}
			return setListenerState(cmd, o, verb == "enable", args[1:])
		default:
			return fmt.Errorf("unknown listeners command %q (list, enable, disable)", verb)
		}
	}
	return cmd
}

func listListeners(cmd *cobra.Command, o *output, q string) error {
	data, err := newClient(cmd).send(cmd.Context(), http.MethodGet, "/api/v1/listeners?q="+url.QueryEscape(q), "", nil)
	if err != nil {
		return err
	}
	var out struct{ Listeners []listenerView }
	if err := json.Unmarshal(data, &out); err != nil {
		return fmt.Errorf("read listeners: %w", err)
	}
	return o.print(cmd, data, func(w io.Writer) {
		fmt.Fprintln(w, "LISTENER\tDESTINATION\tSTATUS")
		for _, l := range out.Listeners {
			fmt.Fprintf(w, "%s\t%s\t%s\n", l.ID, l.Destination, l.Status)
			for _, op := range l.Operations {
				fmt.Fprintf(w, "  └ %s\t\t%s\n", op.Name, onOff(op.Enabled))
			}
		}
	})
}

// setListenerState turns a listener (args: ID) or a binding (ID OPERATION)
// on or off and prints the listener as the agent now has it. Enabling a
// listener whose operations are off says so, and how to turn them on.
func setListenerState(cmd *cobra.Command, o *output, on bool, args []string) error {
	path := apiPath("listeners", args[0])
	if len(args) == 2 {
		path += "/operations/" + url.PathEscape(args[1])
	}
	body := fmt.Sprintf(`{"enabled": %t}`, on)
	data, err := newClient(cmd).send(cmd.Context(), http.MethodPut, path+"/state", "application/json", []byte(body))
	if err != nil {
		return err
	}
	var l listenerView
	if err := json.Unmarshal(data, &l); err != nil {
		return fmt.Errorf("read listener: %w", err)
	}
	verb := "disabled"
	if on {
		verb = "enabled"
	}
	return o.print(cmd, data, func(w io.Writer) {
		fmt.Fprintf(w, "%s %s\n", verb, strings.Join(args, " → "))
		if on && len(args) == 1 {
			offHint(w, l)
		}
	})
}

// offHint names the operations of l still off, which take no message
// until enabled, and the commands that enable them.
func offHint(w io.Writer, l listenerView) {
	var off []string
	for _, op := range l.Operations {
		if !op.Enabled {
			off = append(off, op.Name)
		}
	}
	if len(off) == 0 {
		return
	}
	if len(off) == len(l.Operations) {
		fmt.Fprintf(w, "all its operations are still off, so it takes no message: they wait on the broker\n")
	} else {
		fmt.Fprintf(w, "operations still off (they get no message): %s\n", strings.Join(off, ", "))
	}
	fmt.Fprintln(w, "enable them with:")
	for _, name := range off {
		fmt.Fprintf(w, "  opsrunner listeners enable %s %s\n", l.ID, shellQuote(name))
	}
}

// shellQuote quotes s for a POSIX shell when it holds more than safe
// characters.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
