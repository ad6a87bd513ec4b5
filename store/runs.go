package store

import (
	"encoding/json"
	"fmt"
)

// Defaults shared by the implementations.
const (
	defaultLimit   = 100
	defaultMaxRuns = 10000
	defaultMaxAge  = 7 * 24 * 60 * 60 * 1e9 // 7 days, as a time.Duration
)

// PageSize is how many runs a query with f answers at most: f.Limit, or
// 100 when it names none.
func (f RunFilter) PageSize() int {
	if f.Limit <= 0 {
		return defaultLimit
	}
	return f.Limit
}

func (f DeadLetterFilter) limit() int {
	if f.Limit <= 0 {
		return defaultLimit
	}
	return f.Limit
}

func (r Retention) withDefaults() Retention {
	if r.MaxRuns <= 0 {
		r.MaxRuns = defaultMaxRuns
	}
	if r.MaxAge <= 0 {
		r.MaxAge = defaultMaxAge
	}
	return r
}

// Matches reports whether r passes every set field of f, as the stores'
// queries select runs.
func (f RunFilter) Matches(r Run) bool {
	return (f.Project == "" || r.Project == f.Project) &&
		(f.Operation == "" || r.Operation == f.Operation) &&
		(f.Status == "" || r.Status == f.Status) &&
		(f.MessageID == "" || r.MessageID == f.MessageID) &&
		(f.Outcome == "" || r.Outcome == f.Outcome) &&
		(f.Trigger == "" || r.Trigger == f.Trigger) &&
		(f.Schedule == "" || r.Schedule == f.Schedule) &&
		(f.Since.IsZero() || !r.StartedAt.Before(f.Since)) &&
		(f.Before == "" || r.ID < f.Before)
}

// storedRun is a Run as persisted. Result is kept as its exact bytes (in
// base64; as a json.RawMessage, json.Marshal would escape <, > and & in
// it, and an idempotent replay would not be the first answer byte for
// byte), and Run.FullResult, hidden from the API's JSON, must survive
// storage for idempotent replays.
type storedRun struct {
	Run
	Result     []byte `json:"result,omitempty"` // shadows Run.Result
	FullResult []byte `json:"fullResult,omitempty"`
}

func encodeRun(r Run) ([]byte, error) {
	return appendStoredRun(make([]byte, 0, 256+64*len(r.Logs)), r)
}

// appendStoredRun appends r's stored JSON to b: appendRun's, or
// marshalRun's for a run appendRun leaves to it. On error b is returned as
// it was.
func appendStoredRun(b []byte, r Run) ([]byte, error) {
	start := len(b)
	out, ok := appendRun(b, r)
	if ok {
		return out, nil
	}
	m, err := marshalRun(r)
	if err != nil {
		return b, err
	}
	return append(out[:start], m...), nil
}

// marshalRun encodes r with json.Marshal, for a run appendRun leaves to it.
func marshalRun(r Run) ([]byte, error) {
	b, err := json.Marshal(storedRun{Run: r, Result: r.Result, FullResult: r.FullResult})
	if err != nil {
		return nil, fmt.Errorf("encode run %s: %w", r.ID, err)
	}
	return b, nil
}

func decodeRun(b []byte) (Run, error) {
	var s storedRun
	if err := json.Unmarshal(b, &s); err != nil {
		return Run{}, fmt.Errorf("decode run: %w", err)
	}
	s.Run.Result, s.Run.FullResult = s.Result, s.FullResult
	return s.Run, nil
}
