package scripts

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// posError is a problem located at a YAML node; the manifest walker turns it
// into a *ValidationError carrying the file and field.
func posError(n *yaml.Node, format string, args ...any) *ValidationError {
	return &ValidationError{Line: n.Line, Column: n.Column, Message: fmt.Sprintf(format, args...)}
}

// ParseDuration reads a duration as the manifest writes it: a Go duration
// string ("30s", "1m", "1500ms") or a bare number of seconds ("30", "1.5").
// Negative durations are errors.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var d time.Duration
	if f, err := strconv.ParseFloat(s, 64); err == nil && !strings.ContainsAny(s, "xXpP_") {
		if f != f || f > float64(1<<62)/float64(time.Second) || f < -float64(1<<62)/float64(time.Second) {
			return 0, fmt.Errorf("duration %q is out of range", s)
		}
		d = time.Duration(f * float64(time.Second))
	} else {
		var perr error
		d, perr = time.ParseDuration(s)
		if perr != nil {
			return 0, fmt.Errorf("invalid duration %q: use a number of seconds or a unit, e.g. 30s, 1m, 1500ms", s)
		}
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q must not be negative", s)
	}
	return d, nil
}

// UnmarshalYAML reads "30s"-style strings or a bare number of seconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return posError(n, "expected a duration such as 30s, got a %s", kindName(n))
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return posError(n, "%s", err.Error())
	}
	*d = Duration(v)
	return nil
}

// String formats the duration compactly: "30s", "1m", "1m30s", "1.5s", "0s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// MarshalJSON writes the duration as a string such as "30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string ("30s") or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("reading duration: %w", err)
		}
	} else {
		s = string(b)
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML reads the scalar "any", {pinned: [agent]} (exactly one agent)
// or {reservation: [agents...]} (at least one, no repeats).
func (p *Placement) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value == PlaceAny {
			*p = Placement{Mode: PlaceAny}
			return nil
		}
		return posError(n, "placement must be \"any\", {pinned: [agent]} or {reservation: [agents...]}, got %q", n.Value)
	case yaml.MappingNode:
		if len(n.Content) != 2 {
			return posError(n, "placement must have exactly one key: pinned or reservation")
		}
		key, val := n.Content[0], n.Content[1]
		mode := key.Value
		if mode != PlacePinned && mode != PlaceReservation {
			return posError(key, "unknown placement %q: use any, pinned or reservation", mode)
		}
		if val.Kind != yaml.SequenceNode {
			return posError(val, "placement %s needs a list of agent ids, e.g. [agent-1]", mode)
		}
		var agents []string
		for _, a := range val.Content {
			if a.Kind != yaml.ScalarNode || strings.TrimSpace(a.Value) == "" {
				return posError(a, "agent id must be a non-empty string")
			}
			agents = append(agents, a.Value)
		}
		np := Placement{Mode: mode, Agents: agents}
		if err := np.check(); err != nil {
			return posError(val, "%s", err.Error())
		}
		*p = np
		return nil
	default:
		return posError(n, "placement must be \"any\", {pinned: [agent]} or {reservation: [agents...]}")
	}
}

// check validates a placement; the zero value (Mode "") means any.
func (p Placement) check() error {
	switch p.Mode {
	case "", PlaceAny:
		if len(p.Agents) > 0 {
			return fmt.Errorf("placement any takes no agents")
		}
	case PlacePinned:
		if len(p.Agents) != 1 {
			return fmt.Errorf("placement pinned needs exactly one agent, got %d", len(p.Agents))
		}
	case PlaceReservation:
		if len(p.Agents) == 0 {
			return fmt.Errorf("placement reservation needs at least one agent")
		}
		seen := map[string]bool{}
		for _, a := range p.Agents {
			if seen[a] {
				return fmt.Errorf("placement reservation names agent %q twice", a)
			}
			seen[a] = true
		}
	default:
		return fmt.Errorf("unknown placement %q: use any, pinned or reservation", p.Mode)
	}
	return nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "scalar"
	case yaml.AliasNode:
		return "alias"
	}
	return "document"
}

// ParseAction reads an acknowledge action case-insensitively ("jbxcommit")
// and returns its canonical spelling, ActionCommit or ActionRollback; any
// other value is an error.
func ParseAction(s string) (string, error) {
	switch {
	case strings.EqualFold(s, ActionCommit):
		return ActionCommit, nil
	case strings.EqualFold(s, ActionRollback):
		return ActionRollback, nil
	}
	return "", fmt.Errorf("invalid acknowledge action %q: use %s or %s", s, ActionCommit, ActionRollback)
}

const (
	tagOpen  = "<TAG>Operations/"
	tagClose = "</TAG>"
)

// ParseReference splits an operation reference as scripts write it for
// RunOperation:
//
//	"Price Order"                          → ("", "Price Order")
//	"billing/Charge"                       → ("billing", "Charge")
//	"<TAG>Operations/4. Ack (Commit)</TAG>" → ("", "4. Ack (Commit)")
//
// An empty project means the caller's project. Inside a <TAG> reference
// everything after "Operations/" is the operation name, slashes included
// (Jitterbit's form names operations of the current project only). Because
// names are free text and may contain "/", a plain reference that names an
// operation of the current project must win over the project/name split:
// Project.ResolveReference does that.
func ParseReference(ref string) (project, operation string) {
	r := strings.TrimSpace(ref)
	if len(r) >= len(tagOpen)+len(tagClose) &&
		strings.EqualFold(r[:len(tagOpen)], tagOpen) &&
		strings.EqualFold(r[len(r)-len(tagClose):], tagClose) {
		return "", r[len(tagOpen) : len(r)-len(tagClose)]
	}
	if i := strings.IndexByte(r, '/'); i > 0 && i < len(r)-1 {
		return r[:i], r[i+1:]
	}
	return "", r
}

// ResolveReference resolves a RunOperation reference from a script of p:
// a <TAG> reference or a name of one of p's operations (even one containing
// "/") resolves to p; otherwise "project/name" names another project. The
// returned project is never empty. It does not check that the target exists
// in another project. Safe for concurrent use.
func (p *Project) ResolveReference(ref string) (project, operation string) {
	if _, ok := p.Operation(strings.TrimSpace(ref)); ok {
		return p.Name, strings.TrimSpace(ref)
	}
	project, operation = ParseReference(ref)
	if project == "" {
		project = p.Name
	}
	return project, operation
}
