package agent_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/api"
)

// A project deleted on one agent goes from every agent: its webhook
// answers 404 and its listener is gone, on the agent that deleted it at
// once and on the others through the store's change notification.
// GET /api/v1/info names the cluster's broker without credentials.
func TestDeleteProjectReachesEveryAgent(t *testing.T) {
	rds, b := clusterServices(t)
	a := clusterAgent(t, "del-a", rds.URL, 2, b)
	other := clusterAgent(t, "del-b", rds.URL, 2, b)
	queue := fmt.Sprintf("/queue/del%d.in", rand.Uint32())
	files := map[string]string{
		"opsrunner.yaml": "project: gone\noperations:\n  - name: op\n    script: op.js\n    webhook: {path: op}\n" +
			"listeners:\n  - name: in\n    destination: " + queue + "\n    operations: [op]\n",
		"op.js": "function handle() { return 1; }\n",
	}
	a.mustDeploy(t, "gone", bundle(t, files))
	hook := func(ta *testAgent) int {
		return ta.do(t, "POST", "/hooks/gone/op", "application/json", []byte(`{}`), nil).Status
	}
	listed := func(ta *testAgent) bool {
		return strings.Contains(string(ta.do(t, "GET", "/api/v1/listeners", "", nil, nil).Body), `"gone/in"`)
	}
	waitFor(t, 10*time.Second, func() bool { return hook(other) == http.StatusOK && listed(other) })

	if r := a.do(t, "DELETE", "/api/v1/projects/gone", "", nil, nil); r.Status != http.StatusNoContent {
		t.Fatalf("DELETE /api/v1/projects/gone: %d %s", r.Status, r.Body)
	}
	if hook(a) != http.StatusNotFound || listed(a) {
		t.Fatalf("the deleting agent still serves the project: webhook %d, listener listed %v", hook(a), listed(a))
	}
	waitFor(t, 10*time.Second, func() bool { return hook(other) == http.StatusNotFound && !listed(other) })
	if r := other.do(t, "GET", "/api/v1/projects/gone", "", nil, nil); r.Status != http.StatusNotFound {
		t.Fatalf("GET the deleted project: %d %s", r.Status, r.Body)
	}
	if r := other.do(t, "DELETE", "/api/v1/projects/gone", "", nil, nil); r.Status != http.StatusNotFound || r.errorCode(t) != api.CodeNotFound {
		t.Fatalf("DELETE it again: %d %s", r.Status, r.Body)
	}

	var in api.Info
	if r := a.do(t, "GET", "/api/v1/info", "", nil, nil); r.Status != 200 || json.Unmarshal(r.Body, &in) != nil {
		t.Fatalf("GET /api/v1/info: %d %s", r.Status, r.Body)
	}
	if in.Agent != "del-a" || in.EmbeddedBroker || in.BrokerURL != "stomp://"+b.Addr || in.BrokerAddr != b.Addr || in.Version == "" {
		t.Fatalf("info = %+v; want agent del-a, the shared broker %s, not embedded", in, b.Addr)
	}
}

// One agent: GET /api/v1/info names its embedded broker at the address it
// listens on; a dead letter that is not there is a 404 to read or delete.
func TestInfoAndMissingDeadLetter(t *testing.T) {
	t.Parallel()
	a := startAgent(t, nil)
	var in api.Info
	if r := a.do(t, "GET", "/api/v1/info", "", nil, nil); r.Status != 200 || json.Unmarshal(r.Body, &in) != nil {
		t.Fatalf("GET /api/v1/info: %d %s", r.Status, r.Body)
	}
	if !in.EmbeddedBroker || in.BrokerAddr != a.BrokerAddr() || in.BrokerURL != "stomp://"+a.BrokerAddr() || in.Agent != "test-agent" {
		t.Fatalf("info = %+v; want the embedded broker at %s", in, a.BrokerAddr())
	}
	for _, method := range []string{"GET", "DELETE"} {
		if r := a.do(t, method, "/api/v1/deadletters/nope", "", nil, nil); r.Status != http.StatusNotFound || r.errorCode(t) != api.CodeNotFound {
			t.Errorf("%s a missing dead letter: %d %s", method, r.Status, r.Body)
		}
	}
}
