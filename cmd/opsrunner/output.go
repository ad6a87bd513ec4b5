package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// output is the -o flag of a command that prints something: "text" (the
// default, for people; "table" is its older name) or "json" (for
// scripts: the API's answer, indented).
type output struct{ format string }

// addOutput gives cmd the -o flag; the format is checked before the
// command runs, so a wrong one sends no request.
func addOutput(cmd *cobra.Command) *output {
	o := &output{}
	cmd.Flags().StringVarP(&o.format, "output", "o", "text", "output `FORMAT`: text or json")
	cmd.PreRunE = func(*cobra.Command, []string) error { return o.check() }
	return o
}

func (o *output) check() error {
	switch o.format {
	case "text", "table", "json":
		return nil
	}
	return fmt.Errorf("unknown output %q (text, json)", o.format)
}

// json reports whether -o json was asked for.
func (o *output) json() bool { return o.format == "json" }

// print writes v to cmd's output: indented JSON with -o json (v may be
// the API's raw answer as []byte), else what text writes, through a
// tabwriter so that tab-separated cells line up.
func (o *output) print(cmd *cobra.Command, v any, text func(w io.Writer)) error {
	out := cmd.OutOrStdout()
	if o.json() {
		return writeJSON(out, v)
	}
	w := newTable(out)
	text(w)
	return w.Flush()
}

// writeJSON writes v as indented JSON; raw bytes are indented as they are.
func writeJSON(out io.Writer, v any) error {
	raw, ok := v.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(v); err != nil {
			return fmt.Errorf("encode output: %w", err)
		}
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		buf.Reset()
		buf.Write(raw)
	}
	buf.WriteByte('\n')
	_, err := out.Write(buf.Bytes())
	return err
}

// newTable is the tabwriter every text table uses.
func newTable(out io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(out, 2, 4, 2, ' ', 0) }
