package agent_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opsrunner/opsrunner/scripts"
)

// pricingKey is the API key the pricing service expects; the sample reads
// it as secrets.PRICING_KEY.
const pricingKey = "pk-sample-7c41e09b"

// pricingService is the service samples/pricing calls: POST /v1/quotes
// with a bearer token, answering the unit price of each sku it knows. The
// sku "broken" makes it answer 503; "slow" makes it wait until the caller
// gives up.
func pricingService(t *testing.T) *httptest.Server {
	t.Helper()
	prices := map[string]float64{"tea": 3.5, "cup": 12}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/quotes" {
			http.Error(w, "no such endpoint", http.StatusNotFound)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+pricingKey {
			http.Error(w, "bad API key", http.StatusUnauthorized)
			return
		}
		var req struct {
			Items []struct{ SKU string } `json:"items"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		quote := map[string]float64{}
		for _, it := range req.Items {
			switch it.SKU {
			case "broken":
				http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
				return
			case "slow":
				<-r.Context().Done()
				return
			}
			if p, ok := prices[it.SKU]; ok {
				quote[it.SKU] = p
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"currency": "EUR", "prices": quote})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// pricingBundle packs samples/pricing with its env pointing at serviceURL
// and a short fetch timeout: the manifest's own settings, replaced.
func pricingBundle(t *testing.T, serviceURL string) []byte {
	t.Helper()
	files, err := scripts.ReadBundle(bytes.NewReader(sampleBundle(t, "pricing")), scripts.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	manifest := string(files[scripts.ManifestFile])
	for old, repl := range map[string]string{
		"PRICING_URL: http://127.0.0.1:8090": "PRICING_URL: " + serviceURL,
		`PRICING_TIMEOUT_MS: "3000"`:         `PRICING_TIMEOUT_MS: "300"`,
	} {
		if strings.Count(manifest, old) != 1 {
			t.Fatalf("the sample's opsrunner.yaml no longer has %q once", old)
		}
		manifest = strings.Replace(manifest, old, repl, 1)
	}
	out := make(map[string]string, len(files))
	for name, data := range files {
		out[name] = string(data)
	}
	out[scripts.ManifestFile] = manifest
	return bundle(t, out)
}

func TestThePricingSamplePricesAnOrderThroughItsService(t *testing.T) {
	t.Parallel()
	svc := pricingService(t)
	ta := startAgent(t, nil)
	ta.mustDeploy(t, "pricing", pricingBundle(t, svc.URL))
	price := func(t *testing.T, order string) response {
		t.Helper()
		return ta.do(t, http.MethodPost, "/hooks/pricing/price", "application/json", []byte(order), nil)
	}
	scriptError := func(t *testing.T, r response, want string) {
		t.Helper()
		if r.Status != http.StatusInternalServerError || r.errorCode(t) != "script_error" || !strings.Contains(string(r.Body), want) {
			t.Fatalf("answer %d %s, want a script_error saying %q", r.Status, r.Body, want)
		}
	}

	t.Run("without the secret the run fails saying how to set it", func(t *testing.T) {
		scriptError(t, price(t, `{"id": "A-0", "items": [{"sku": "tea", "qty": 1}]}`),
			"the secret PRICING_KEY is not set: opsrunner secrets set pricing PRICING_KEY")
	})

	if r := ta.do(t, http.MethodPut, "/api/v1/projects/pricing/secrets/PRICING_KEY", "", []byte(pricingKey), nil); r.Status != http.StatusNoContent {
		t.Fatalf("set secret: %d %s", r.Status, r.Body)
	}

	t.Run("an order is priced", func(t *testing.T) {
		r := price(t, `{"id": "A-1", "customer": "ada", "items": [{"sku": "tea", "qty": 2}, {"sku": "cup", "qty": 1}]}`)
		if r.Status != http.StatusOK {
			t.Fatalf("answer %d %s", r.Status, r.Body)
		}
		want := `{"currency":"EUR","customer":"ada","id":"A-1","items":[` +
			`{"amount":7,"qty":2,"sku":"tea","unitPrice":3.5},{"amount":12,"qty":1,"sku":"cup","unitPrice":12}],"total":19}`
		if got := canonicalJSON(t, r.Body); got != want {
			t.Fatalf("priced order\n got %s\nwant %s", got, want)
		}
	})

	t.Run("a malformed order is a 400", func(t *testing.T) {
		r := price(t, `{"id": "A-2", "items": []}`)
		if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "order A-2 has no items") {
			t.Fatalf("answer %d %s", r.Status, r.Body)
		}
	})

	t.Run("a service error fails the run naming the status", func(t *testing.T) {
		scriptError(t, price(t, `{"id": "A-3", "items": [{"sku": "broken", "qty": 1}]}`),
			"pricing order A-3: the pricing service answered 503 Service Unavailable")
	})

	t.Run("a slow service fails the run at the fetch timeout", func(t *testing.T) {
		scriptError(t, price(t, `{"id": "A-4", "items": [{"sku": "slow", "qty": 1}]}`),
			"pricing order A-4: the pricing service did not answer in time: fetch to "+strings.TrimPrefix(svc.URL, "http://")+": no response within the 300ms timeout")
	})

	t.Run("the run records hold the calls but not the key", func(t *testing.T) {
		runs := ta.do(t, http.MethodGet, "/api/v1/runs?project=pricing&limit=50", "", nil, nil)
		if runs.Status != http.StatusOK {
			t.Fatalf("runs: %d %s", runs.Status, runs.Body)
		}
		body := string(runs.Body)
		if strings.Contains(body, pricingKey) {
			t.Fatalf("a run record holds the API key: %s", body)
		}
		host := strings.TrimPrefix(svc.URL, "http://")
		if !strings.Contains(body, "fetch POST "+host+": 200 in ") || !strings.Contains(body, "priced order A-1 at 19 EUR") {
			t.Fatalf("run logs lack the fetch line or the priced order: %s", body)
		}
		if strings.Contains(body, "/v1/quotes") {
			t.Fatalf("a run log shows the URL's path: %s", body)
		}
	})
}

// canonicalJSON re-encodes a JSON document with sorted keys.
func canonicalJSON(t *testing.T, data []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, data)
	}
	out, _ := json.Marshal(v)
	return string(out)
}
