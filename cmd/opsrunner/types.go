package main

import (
	"io"

	"github.com/opsrunner/opsrunner/sdk"
	"github.com/spf13/cobra"
)

// newTypes is `opsrunner types`: it prints the TypeScript declarations of
// the script API, for an editor or tsc to type-check operations with.
func newTypes() *cobra.Command {
	return &cobra.Command{
		Use:   "types",
		Short: "Print the TypeScript declarations of the script API (opsrunner.d.ts)",
		Long: `Print the TypeScript declarations of the script API: every global a script
sees, the handler's event per trigger, ctx, and the errors and answers of
operations. Save them next to a jsconfig.json with "checkJs": true and an
editor autocompletes and type-checks the operations ("opsrunner init" sets
up a project that way).`,
		Example: `  opsrunner types > opsrunner.d.ts`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := io.WriteString(cmd.OutOrStdout(), sdk.Declarations())
			return err
		},
	}
}
