package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// agentIDFile holds, in the data dir, the id an agent made up for itself.
const agentIDFile = "agent-id"

// keepAgentID returns the agent id kept in dir, or keeps made (an id
// Defaults made up) there and returns it. A single agent's id names what
// must outlive a restart: its durable topic subscriptions and its private
// retry queues, which a new id would leave behind on the broker (a durable
// subscription keeping every message published to its topic for ever).
func keepAgentID(dir, made string) (string, error) {
	path := filepath.Join(dir, agentIDFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		id := strings.TrimSpace(string(b))
		if id == "" || len(id) > 200 || strings.ContainsAny(id, "\r\n") {
			return "", fmt.Errorf("%s: not an agent id", path)
		}
		return id, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(made+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	return made, nil
}
