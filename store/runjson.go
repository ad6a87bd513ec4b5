package store

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendRun appends the JSON of storedRun{Run: r, Result: r.Result,
// FullResult: r.FullResult}: the
// bytes json.Marshal writes, without its reflection (encoding runs was half
// the cost of recording one). ok is false when r needs json.Marshal's own
// handling (a time json.Marshal refuses, or strings it escapes).
func appendRun(b []byte, r Run) (_ []byte, ok bool) {
	w := runWriter{b: b, ok: true}
	w.raw(`{"id":`)
	w.str(r.ID)
	w.raw(`,"project":`)
	w.str(r.Project)
	w.optInt(`,"version":`, int64(r.Version))
	w.raw(`,"operation":`)
	w.str(r.Operation)
	w.raw(`,"trigger":`)
	w.str(r.Trigger)
	w.raw(`,"status":`)
	w.str(r.Status)
	w.optStr(`,"error":`, r.Error)
	w.raw(`,"startedAt":`)
	w.time(r.StartedAt)
	if r.FinishedAt != nil {
		w.raw(`,"finishedAt":`)
		w.time(*r.FinishedAt)
	}
	w.raw(`,"durationMs":`)
	w.float(r.DurationMs)
	w.raw(`,"agent":`)
	w.str(r.Agent)
	w.optStr(`,"listener":`, r.Listener)
	w.optStr(`,"messageId":`, r.MessageID)
	w.optInt(`,"attempt":`, int64(r.Attempt))
	w.optStr(`,"outcome":`, r.Outcome)
	if len(r.Chain) > 0 {
		w.raw(`,"chain":[`)
		for i, s := range r.Chain {
			if i > 0 {
				w.raw(",")
			}
			w.raw(`{"operation":`)
			w.str(s.Operation)
			w.raw(`,"status":`)
			w.str(s.Status)
			w.optStr(`,"error":`, s.Error)
			w.raw(`,"durationMs":`)
			w.float(s.DurationMs)
			w.raw("}")
		}
		w.raw("]")
	}
	w.raw(`,"logs":`)
	if r.Logs == nil {
		w.raw("null")
	} else {
		w.raw("[")
		for i, l := range r.Logs {
			if i > 0 {
				w.raw(",")
			}
			w.raw(`{"time":`)
			w.time(l.Time)
			w.raw(`,"level":`)
			w.str(l.Level)
			w.raw(`,"message":`)
			w.str(l.Message)
			w.raw("}")
		}
		w.raw("]")
	}
	w.tail(r)
	w.raw("}")
	return w.b, w.ok
}

// InputJSON is raw as a run keeps it in Run.Input: JSON in the form
// json.Marshal writes a json.RawMessage (compact, HTML-escaped), and text
// that is not JSON as a JSON string. Input that is already in that form,
// as machine-made JSON usually is, is only copied.
func InputJSON(raw []byte) json.RawMessage {
	if !json.Valid(raw) {
		b, _ := json.Marshal(string(raw))
		return b
	}
	if marshalForm(raw) {
		return bytes.Clone(raw)
	}
	var compact, escaped bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		b, _ := json.Marshal(string(raw))
		return b
	}
	json.HTMLEscape(&escaped, compact.Bytes())
	return escaped.Bytes()
}

// tail writes the fields after the logs: the webhook status, the parent
// run, the schedule, the input and the result.
func (w *runWriter) tail(r Run) {
	w.optInt(`,"httpStatus":`, int64(r.HTTPStatus))
	w.optStr(`,"parentRunId":`, r.ParentRunID)
	w.optStr(`,"schedule":`, r.Schedule)
	if r.ScheduledAt != nil {
		w.raw(`,"scheduledAt":`)
		w.time(*r.ScheduledAt)
	}
	if len(r.Input) > 0 {
		// Input is written as it is when it is what json.Marshal would
		// make of it (the agent keeps it so; see Run.Input).
		w.ok = w.ok && marshalForm(r.Input)
		w.raw(`,"input":`)
		w.b = append(w.b, r.Input...)
	}
	if r.InputTruncated {
		w.raw(`,"inputTruncated":true`)
	}
	w.raw(`,"resultTruncated":`)
	w.b = strconv.AppendBool(w.b, r.ResultTruncated)
	w.optBytes(`,"result":`, r.Result)
	w.optBytes(`,"fullResult":`, r.FullResult)
}

// marshalForm reports whether JSON text j is as json.Marshal writes a
// json.RawMessage: no whitespace outside strings, and none of the
// characters it escapes (<, >, &, U+2028, U+2029).
func marshalForm(j []byte) bool {
	inString, escaped := false, false
	for i, c := range j {
		switch {
		case c == '<' || c == '>' || c == '&':
			return false
		case c == 0xE2 && i+2 < len(j) && j[i+1] == 0x80 && (j[i+2] == 0xA8 || j[i+2] == 0xA9):
			return false
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return false
		}
	}
	return true
}

// runWriter appends JSON pieces; ok turns false on a value it leaves to
// json.Marshal.
type runWriter struct {
	b  []byte
	ok bool
}

func (w *runWriter) raw(s string) { w.b = append(w.b, s...) }
func (w *runWriter) int(n int64)  { w.b = strconv.AppendInt(w.b, n, 10) }

// float writes f as json.Marshal does for the values a duration in
// milliseconds takes (0, or from 1e-3 to well below 1e21); others are left
// to json.Marshal.
func (w *runWriter) float(f float64) {
	if f != 0 && (f < 1e-6 || f >= 1e21) {
		w.ok = false
		return
	}
	w.b = strconv.AppendFloat(w.b, f, 'f', -1, 64)
}

// optStr and optInt write a field tagged omitempty: nothing when zero.
func (w *runWriter) optStr(key, s string) {
	if s != "" {
		w.raw(key)
		w.str(s)
	}
}

// optBytes writes a []byte field tagged omitempty as json.Marshal does:
// in base64, nothing when empty.
func (w *runWriter) optBytes(key string, b []byte) {
	if len(b) > 0 {
		w.raw(key)
		w.raw(`"`)
		w.b = base64.StdEncoding.AppendEncode(w.b, b)
		w.raw(`"`)
	}
}

func (w *runWriter) optInt(key string, n int64) {
	if n != 0 {
		w.raw(key)
		w.int(n)
	}
}

func (w *runWriter) time(t time.Time) {
	if y := t.Year(); y < 0 || y > 9999 {
		w.ok = false // json.Marshal fails on these; let it say so
		return
	}
	w.b = append(w.b, '"')
	w.b = t.AppendFormat(w.b, time.RFC3339Nano)
	w.b = append(w.b, '"')
}

// str writes s when it needs no escaping (printable ASCII but for
// json.Marshal's escaped characters); other strings go through json.Marshal
// so that the bytes stay exactly its.
func (w *runWriter) str(s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			w.b = append(w.b, q...)
			return
		}
	}
	w.b = append(w.b, '"')
	w.b = append(w.b, s...)
	w.b = append(w.b, '"')
}
