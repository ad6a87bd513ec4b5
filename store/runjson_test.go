package store

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// encodeRun writes exactly the bytes json.Marshal writes for a stored run.
func TestEncodeRunMatchesJSONMarshal(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 25, 13, 4, 5, 123456789, time.UTC)
	end := start.Add(1500 * time.Microsecond)
	zoned := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("X", -(3*3600+30*60)))
	runs := map[string]Run{
		"zero":     {},
		"webhook":  {ID: "01J", Project: "p", Version: 3, Operation: "op", Trigger: "webhook", Status: StatusSucceeded, StartedAt: start, FinishedAt: &end, DurationMs: 0.125, Agent: "a", Logs: []LogLine{}, HTTPStatus: 200},
		"nil logs": {ID: "x", StartedAt: zoned},
		"listener": {ID: "y", Status: StatusFailed, Error: "bad <order> & \"quote\"\n\ttab", Listener: "l", MessageID: "ID:host-1:2", Attempt: 2, Outcome: "rolled back",
			Chain: []Step{{Operation: "a", Status: StatusSucceeded, DurationMs: 3}, {Operation: "b/ü", Status: StatusFailed, Error: "x\u2028y"}},
			Logs:  []LogLine{{Time: start, Level: "info", Message: "héllo \x01 \\"}, {Time: zoned, Level: "warn", Message: ""}}, ParentRunID: "p1"},
		"schedule":                       {ID: "sc", Trigger: "schedule", Schedule: "nightly <eu>", ScheduledAt: &start, Logs: []LogLine{}},
		"result":                         {ID: "z", Result: []byte(`{"status":200}`), Logs: []LogLine{}},
		"result with spaces and escapes": {ID: "s", Result: []byte(`{"a b":"x \" y","c":[1,null,true]}`)},
		"result json.Marshal escapes":    {ID: "e", Result: []byte(`{"html":"<b>&amp;</b>","ls":" "}`)},
		"result not compact":             {ID: "w", Result: []byte("{ \"a\": 1 }")},
		"result null":                    {ID: "n", Result: []byte(`null`)},
		"result cut":                     {ID: "t", ResultTruncated: true, FullResult: []byte(`"a long answer"`)},
		"input":                          {ID: "i", Input: []byte(`{"a":[1,"x \" y"]}`), Logs: []LogLine{}},
		"input not compact":              {ID: "i2", Input: []byte("{ \"a\": \"b c\" }")},
		"input json.Marshal escapes":     {ID: "i3", Input: []byte(`"<b>&` + "\u2028" + `"`)},
		"input cut":                      {ID: "i4", InputTruncated: true},
		"invalid":                        {ID: "bad\xff utf8", Logs: []LogLine{{Message: "\xed\xa0\x80"}}},
		"far year":                       {ID: "far", StartedAt: time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for name, r := range runs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want, wantErr := json.Marshal(storedRun{Run: r, Result: r.Result, FullResult: r.FullResult})
			got, err := encodeRun(r)
			if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
				t.Fatalf("encodeRun:\n got %s (%v)\nwant %s (%v)", got, err, want, wantErr)
			}
			if err != nil {
				return
			}
			back, err := decodeRun(got)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if again, _ := encodeRun(back); name != "invalid" && !bytes.Equal(again, got) { // invalid UTF-8 decodes to U+FFFD
				t.Fatalf("round trip changed the run:\n%s\n%s", got, again)
			}
		})
	}
}

func FuzzEncodeRun(f *testing.F) {
	f.Add("id", "error <x>", "message\n", int64(1764075845123456789), 3, []byte(nil))
	f.Add("\xff", "", "é", int64(0), 0, []byte("r"))
	f.Add("r", "", "", int64(0), 0, []byte(`{"a":[1, "<\\\"x"]}`))
	f.Fuzz(func(t *testing.T, id, errMsg, msg string, ns int64, attempt int, result []byte) {
		at := time.Unix(0, ns).UTC()
		r := Run{ID: id, Error: errMsg, StartedAt: at, FinishedAt: &at, Attempt: attempt, FullResult: result,
			Chain: []Step{{Operation: msg, Error: errMsg}}, Logs: []LogLine{{Time: at, Message: msg}}}
		if json.Valid(result) { // a result is JSON (the runtime's)
			r.Result = result
		}
		want, wantErr := json.Marshal(storedRun{Run: r, Result: r.Result, FullResult: r.FullResult})
		got, err := encodeRun(r)
		if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("encodeRun:\n got %s (%v)\nwant %s (%v)", got, err, want, wantErr)
		}
	})
}

// A run's input in the form the agent keeps it is written by appendRun
// itself, not left to json.Marshal.
func TestEncodeRunWritesKeptInputItself(t *testing.T) {
	t.Parallel()
	for _, input := range []string{`{"a":[1,"x \" y"]}`, `"text with spaces"`, `{"html":"\u003cb\u003e"}`} {
		if _, ok := appendRun(nil, Run{ID: "i", Input: []byte(input)}); !ok {
			t.Errorf("input %s left to json.Marshal", input)
		}
	}
	for _, input := range []string{`{ "a": 1 }`, `"<b>"`, "\"\u2028\""} {
		if _, ok := appendRun(nil, Run{ID: "i", Input: []byte(input)}); ok {
			t.Errorf("input %s written as it is, unlike json.Marshal", input)
		}
	}
}

// InputJSON keeps JSON in json.Marshal's form and makes other text a JSON
// string; what it returns, appendRun writes itself.
func TestInputJSON(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`{"id":7}`:                `{"id":7}`,
		"{ \"id\" : [1, 2] }\n":   `{"id":[1,2]}`,
		`{"note":"<b> & </b>"}`:   `{"note":"\u003cb\u003e \u0026 \u003c/b\u003e"}`,
		"plain words":             `"plain words"`,
		`{"cut":`:                 `"{\"cut\":"`,
		"\"line\u2028separator\"": `"line\u2028separator"`,
	} {
		got := InputJSON([]byte(in))
		if string(got) != want {
			t.Errorf("InputJSON(%q) = %s, want %s", in, got, want)
		}
		if _, ok := appendRun(nil, Run{ID: "i", Input: got}); !ok {
			t.Errorf("InputJSON(%q) = %s is left to json.Marshal", in, got)
		}
	}
}
