package agent

import (
	"encoding/json"

	"github.com/opsrunner/opsrunner/store"
)

// runInput is what a run keeps of the body it was started with (see
// store.Run.Input): a webhook's raw body, a message's body, a schedule's
// input; JSON as it came (compacted), other text as a JSON string. It is
// nil when the event has no body, and truncated is true when the body is
// longer than store.MaxInputBytes.
func runInput(ev any) (input json.RawMessage, truncated bool) {
	event, _ := ev.(map[string]any)
	var raw []byte
	switch body := event["body"].(type) {
	case nil:
		return nil, false
	case json.RawMessage:
		raw = body
	default:
		if text, ok := event["rawBody"].(string); ok {
			raw = []byte(text)
		} else if s, ok := body.(string); ok {
			raw = []byte(s)
		} else {
			b, err := json.Marshal(body)
			if err != nil {
				return nil, false
			}
			raw = b
		}
	}
	if len(raw) > store.MaxInputBytes {
		return nil, true
	}
	return store.InputJSON(raw), false
}
