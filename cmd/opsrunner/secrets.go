package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/opsrunner/opsrunner/store"
	"github.com/spf13/cobra"
)

func newSecrets() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secrets set|list|rm PROJECT [NAME]",
		Short: "Set, list or remove a project's secrets (read in scripts as secrets.NAME)",
		Long: `Project secrets are stored encrypted by the agent and read in scripts as
secrets.NAME. Values are never shown: list prints names and update times.
A project need not be deployed to have secrets, and a changed secret needs
no redeploy.`,
		Example: `  printf %s "$API_KEY" | opsrunner secrets set shop API_KEY
  opsrunner secrets set shop TLS_KEY --from-file key.pem
  opsrunner secrets list shop
  opsrunner secrets rm shop API_KEY`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown secrets command %q (set, list, rm)", args[0])
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(newSecretsSet(), newSecretsList(), newSecretsRm())
	return cmd
}

func secretPath(project, name string) string {
	p := "/api/v1/projects/" + url.PathEscape(project) + "/secrets"
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
}

func newSecretsSet() *cobra.Command {
	var fromFile string
	cmd := &cobra.Command{
		Use:   "set PROJECT NAME",
		Short: "Set a secret from stdin (one trailing newline dropped) or --from-file (as is)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			value, err := secretValue(cmd, fromFile)
			if err != nil {
				return err
			}
			if _, _, err := newClient(cmd).do(cmd.Context(), http.MethodPut, secretPath(args[0], args[1]), "application/octet-stream", bytes.NewReader(value), nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "set secret %s of project %s\n", args[1], args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&fromFile, "from-file", "", "read the value from `FILE`, as is")
	return cmd
}

// secretValue reads a secret's value: the file's bytes as they are, or
// stdin without one trailing newline (what echo and a typed line add).
func secretValue(cmd *cobra.Command, fromFile string) ([]byte, error) {
	if fromFile != "" {
		value, err := os.ReadFile(fromFile)
		if err != nil {
			return nil, fmt.Errorf("read secret value: %w", err)
		}
		return value, nil
	}
	in := cmd.InOrStdin()
	if f, ok := in.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprintln(cmd.ErrOrStderr(), "reading the value from stdin; end it with Ctrl-D")
		}
	}
	value, err := io.ReadAll(in)
	if err != nil {
		return nil, fmt.Errorf("read secret value from stdin: %w", err)
	}
	if v, ok := bytes.CutSuffix(value, []byte("\n")); ok {
		value, _ = bytes.CutSuffix(v, []byte("\r"))
	}
	return value, nil
}

func newSecretsList() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list PROJECT",
		Short: "List a project's secrets: names and update times, never values",
		Args:  cobra.ExactArgs(1),
	}
	o := addOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		data, err := newClient(cmd).send(cmd.Context(), http.MethodGet, secretPath(args[0], ""), "", nil)
		if err != nil {
			return err
		}
		var list struct{ Secrets []store.SecretInfo }
		if err := json.Unmarshal(data, &list); err != nil {
			return fmt.Errorf("read secrets: %w", err)
		}
		return o.print(cmd, data, func(w io.Writer) {
			fmt.Fprintln(w, "NAME\tUPDATED")
			for _, s := range list.Secrets {
				fmt.Fprintf(w, "%s\t%s\n", s.Name, s.UpdatedAt.Local().Format(time.DateTime))
			}
		})
	}
	return cmd
}

func newSecretsRm() *cobra.Command {
	return &cobra.Command{
		Use:   "rm PROJECT NAME",
		Short: "Remove a secret",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, _, err := newClient(cmd).do(cmd.Context(), http.MethodDelete, secretPath(args[0], args[1]), "", nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed secret %s of project %s\n", args[1], args[0])
			return nil
		},
	}
}
