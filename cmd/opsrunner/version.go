package main

import (
	"io"
	"runtime/debug"
	"strings"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/spf13/cobra"
)

// buildVersion says which build this binary is.
type buildVersion struct {
	// Version is the -ldflags value (the Dockerfile's) when set, else the
	// module's version, "devel" for a build of a working tree.
	Version string `json:"version"`
	// Revision, Time and Modified are the VCS stamp of `go build` and
	// `go run` in a checkout: the commit, its time, and whether the tree
	// had uncommitted changes.
	Revision string `json:"revision,omitempty"`
	Time     string `json:"time,omitempty"`
	Modified bool   `json:"modified"`
	Go       string `json:"go,omitempty"`
}

// readBuildVersion combines ldflags (the value of agent.Version before
// main changes it) with the binary's build information; read is
// debug.ReadBuildInfo.
func readBuildVersion(ldflags string, read func() (*debug.BuildInfo, bool)) buildVersion {
	v := buildVersion{Version: ldflags}
	bi, ok := read()
	if !ok {
		return v
	}
	v.Go = bi.GoVersion
	if v.Version == "" || v.Version == "dev" {
		v.Version = "devel"
		if mv := bi.Main.Version; mv != "" && mv != "(devel)" {
			v.Version = mv
		}
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// String is one word for heartbeats and /api/v1/info: the version, and
// for a devel build the short revision, "-dirty" when modified
// ("devel+1a2b3c4d5e6f-dirty").
func (v buildVersion) String() string {
	s := v.Version
	if v.Version == "devel" && v.Revision != "" {
		s += "+" + v.Revision[:min(12, len(v.Revision))]
		if v.Modified {
			s += "-dirty"
		}
	}
	return s
}

// text is the `opsrunner version` line.
func (v buildVersion) text(w io.Writer) {
	var parts []string
	if v.Revision != "" {
		parts = append(parts, "revision "+v.Revision)
	}
	if v.Time != "" {
		parts = append(parts, v.Time)
	}
	if v.Modified {
		parts = append(parts, "modified")
	}
	if v.Go != "" {
		parts = append(parts, v.Go)
	}
	line := "opsrunner " + v.Version
	if len(parts) > 0 {
		line += " (" + strings.Join(parts, ", ") + ")"
	}
	io.WriteString(w, line+"\n")
}

func newVersion(v buildVersion) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, the VCS revision and time it was built from",
		Args:  cobra.NoArgs,
	}
	o := addOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return o.print(cmd, v, v.text) }
	return cmd
}

// ldflagsVersion is agent.Version as built: "dev" unless -ldflags set it.
var ldflagsVersion = agent.Version

// thisBuild is this binary's version.
func thisBuild() buildVersion { return readBuildVersion(ldflagsVersion, debug.ReadBuildInfo) }
