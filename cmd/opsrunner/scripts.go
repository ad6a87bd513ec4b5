package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/opsrunner/opsrunner/store"
	"github.com/spf13/cobra"
)

func newScripts() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scripts put PROJECT OPERATION FILE",
		Short: "Replace one operation's script (a new version of the project)",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown scripts command %q (put)", args[0])
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(newScriptsPut())
	return cmd
}

func newScriptsPut() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "put PROJECT OPERATION FILE",
		Short: "Upload FILE as the script of OPERATION: a new version of PROJECT, the rest unchanged",
		Long: `put replaces the script of one operation of a deployed project and makes
the result a new live version (the agent compiles it first: an error
names file:line:col and the live version stays). Use "-" as FILE for stdin.`,
		Example: `  opsrunner scripts put orders "Process Order" operations/process-order.js
  opsrunner scripts put hello hello - < hello.js`,
		Args: cobra.ExactArgs(3),
	}
	o := addOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		project, operation, file := args[0], args[1], args[2]
		src, err := readScript(cmd, file)
		if err != nil {
			return err
		}
		data, err := newClient(cmd).send(cmd.Context(), http.MethodPut, apiPath("projects", project, "operations", operation), "application/javascript", src)
		if err != nil {
			return err
		}
		var v store.ProjectVersion
		if err := json.Unmarshal(data, &v); err != nil {
			return fmt.Errorf("read answer: %w", err)
		}
		return o.print(cmd, data, func(w io.Writer) {
			fmt.Fprintf(w, "deployed %s version %d (script of %s replaced)\n", v.Project, v.Version, operation)
		})
	}
	return cmd
}

// readScript reads FILE, or stdin for "-".
func readScript(cmd *cobra.Command, file string) ([]byte, error) {
	if file == "-" {
		src, err := io.ReadAll(cmd.InOrStdin())
		if err != nil {
			return nil, fmt.Errorf("read script from stdin: %w", err)
		}
		return src, nil
	}
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read script: %w", err)
	}
	return src, nil
}
