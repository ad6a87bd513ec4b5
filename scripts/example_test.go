package scripts_test

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/opsrunner/opsrunner/scripts"
)

// A deploy reads the uploaded bundle, then loads it; every problem comes
// back at once, each with its file and position.
func ExampleLoad() {
	var upload bytes.Buffer
	_ = scripts.WriteBundle(&upload, map[string][]byte{
		"opsrunner.yaml":      []byte("project: hello\noperations:\n  - name: hello\n    script: operations/hello.js\n    timeout: 90m\n    webhook: {}\n"),
		"operations/hello.js": []byte("function handle(event) {\n  return {message: 'hello' +};\n}\n"),
	})
	files, err := scripts.ReadBundle(&upload, scripts.Limits{})
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = scripts.Load("hello", 1, files, scripts.LoadOptions{})
	var problems scripts.Errors
	if errors.As(err, &problems) {
		for _, p := range problems {
			fmt.Println(p)
		}
	}
	// Output:
	// opsrunner.yaml:5:14: operations[0].timeout: timeout must be more than 0 and at most 1h, got 1h30m
	// operations/hello.js:2:29: SyntaxError: Unexpected token }
}
