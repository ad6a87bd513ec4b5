package egress_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/opsrunner/opsrunner/egress"
)

// A project's policy comes from its manifest; the Client is the agent's.
func Example() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"price": 42}`)
	}))
	defer api.Close()

	pol, err := egress.ParsePolicy([]string{"api.example.com", "localhost"})
	if err != nil {
		panic(err)
	}
	client, err := egress.NewClient(egress.Config{})
	if err != nil {
		panic(err)
	}
	defer client.Close()

	resp, err := client.Do(context.Background(), pol, egress.Request{URL: api.URL + "/price"})
	if err != nil {
		panic(err)
	}
	fmt.Println(resp.Status, string(resp.Body))

	_, err = client.Do(context.Background(), pol, egress.Request{URL: "https://evil.example/"})
	var e *egress.Error
	if errors.As(err, &e) && e.Kind == egress.NotAllowed {
		fmt.Println(e)
	}
	// Output:
	// 200 {"price": 42}
	// fetch to evil.example is not allowed: add it to egress in opsrunner.yaml
}
