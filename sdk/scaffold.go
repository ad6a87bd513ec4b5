package sdk

import (
	"embed"
	"fmt"
	"io/fs"
	"strings"
)

// scaffold holds the files of a new project; "{{project}}" in them stands
// for the project's name.
//
//go:embed scaffold
var scaffold embed.FS

// Scaffold returns the files of a new project named project, by path
// (slash-separated, relative to the project folder): opsrunner.yaml with
// one webhook operation, operations/hello.js, a jsconfig.json that
// type-checks the operations with checkJs, and opsrunner.d.ts. project is
// used as given: validate it first (scripts.ValidProjectName). An error
// means the embedded files could not be read (a broken build).
func Scaffold(project string) (map[string][]byte, error) {
	files := map[string][]byte{DeclarationsFile: []byte(declarations)}
	err := fs.WalkDir(scaffold, "scaffold", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := scaffold.ReadFile(path)
		if err != nil {
			return err
		}
		files[strings.TrimPrefix(path, "scaffold/")] = []byte(strings.ReplaceAll(string(data), "{{project}}", project))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the embedded scaffold: %w", err)
	}
	return files, nil
}
