package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/sdk"
	"github.com/spf13/cobra"
)

// newInit is `opsrunner init DIR`: it writes a new project (sdk.Scaffold)
// into DIR and says how to deploy and call it.
func newInit() *cobra.Command {
	var project string
	var force bool
	cmd := &cobra.Command{
		Use:   "init DIR",
		Short: "Scaffold a project: a manifest, one webhook operation, and type-checking for editors",
		Long: `Create a project in DIR (made if missing): opsrunner.yaml with one operation
behind a webhook, operations/hello.js, and jsconfig.json with opsrunner.d.ts
so that editors autocomplete the script API and type-check the operations
("checkJs"). DIR must be empty unless --force, which writes these files over
what is there and keeps any other file.`,
		Example: `  opsrunner init greeter
  opsrunner init ./projects/shop --project shop`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if project == "" {
				project = projectFromDir(dir)
			}
			if err := scripts.ValidProjectName(project); err != nil {
				return fmt.Errorf("init %s: %q cannot name the project: %w; choose one with --project", dir, project, err)
			}
			if err := checkInitDir(dir, force); err != nil {
				return err
			}
			files, err := sdk.Scaffold(project)
			if err != nil {
				return fmt.Errorf("init %s: %w", dir, err)
			}
			if err := writeFiles(dir, files); err != nil {
				return fmt.Errorf("init %s: %w", dir, err)
			}
			printNextSteps(cmd.OutOrStdout(), dir, project, files)
			return nil
		},
	}
	cmd.Flags().StringVar(&project, "project", "", "project `name` (default: DIR's name, lower-cased)")
	cmd.Flags().BoolVar(&force, "force", false, "write into a folder that is not empty, over the scaffold's files")
	return cmd
}

// projectFromDir derives a project name from a folder's name: lower-cased,
// each character a project name cannot hold replaced by "-", leading dots
// dropped, at most scripts.MaxProjectNameLength characters. It may still
// be invalid (e.g. empty); the caller checks.
func projectFromDir(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, filepath.Base(dir))
	name = strings.TrimLeft(name, ".")
	if len(name) > scripts.MaxProjectNameLength {
		name = name[:scripts.MaxProjectNameLength]
	}
	return name
}

// checkInitDir returns nil when dir does not exist or is an empty folder,
// or, with force, any folder.
func checkInitDir(dir string, force bool) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("init %s: %w", dir, err)
	case len(entries) > 0 && !force:
		return fmt.Errorf("init %s: the folder is not empty (%d entries): choose a new or empty folder, or add --force to write the project's files over it (other files are kept)", dir, len(entries))
	}
	return nil
}

// writeFiles writes files (slash-separated paths) under dir.
func writeFiles(dir string, files map[string][]byte) error {
	for _, name := range slices.Sorted(maps.Keys(files)) {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, files[name], 0o644); err != nil {
			return err
		}
	}
	return nil
}

// printNextSteps lists what init wrote and how to deploy and call it.
func printNextSteps(w io.Writer, dir, project string, files map[string][]byte) {
	fmt.Fprintf(w, "created project %s in %s:\n", project, dir)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		fmt.Fprintf(w, "  %s\n", name)
	}
	fmt.Fprintf(w, `
next:
  opsrunner serve                      # an agent, if none runs yet (another terminal)
  opsrunner deploy %[1]s
  opsrunner invoke %[2]s/hello --data '{"name": "Ada"}'
  curl -X POST localhost:8080/hooks/%[2]s/hello -H 'Content-Type: application/json' -d '{"name": "Ada"}'

Editors type-check operations/*.js against opsrunner.d.ts (jsconfig.json);
so does: npx -p typescript tsc -p %[1]s/jsconfig.json
`, shellWord(dir), project)
}

// shellWord quotes s for a POSIX shell when it holds more than letters,
// digits and "_./-".
func shellWord(s string) string {
	plain := s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_./-", r))
	}) < 0
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
