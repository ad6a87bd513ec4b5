package agent

import (
	"context"
	"fmt"

	"github.com/opsrunner/opsrunner/egress"
	"github.com/opsrunner/opsrunner/runtime"
	"github.com/opsrunner/opsrunner/scripts"
)

// newEgress returns the agent's HTTP client for fetch, from the egress
// section of its configuration.
func newEgress(c EgressConfig) (*egress.Client, error) {
	cfg := egress.Config{CAFiles: c.CAFiles, MaxBodyBytes: c.MaxBodyBytes, MaxRedirects: c.MaxRedirects}
	if len(c.Deny) > 0 {
		deny, err := egress.ParsePrefixes(c.Deny)
		if err != nil {
			return nil, fmt.Errorf("egress.deny: %w", err)
		}
		cfg.Deny = deny
	}
	client, err := egress.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}
	return client, nil
}

// fetcher makes the fetch calls of scripts (runtime.Fetcher) under the
// calling project's egress policy.
type fetcher struct{ client *egress.Client }

func (f fetcher) Fetch(ctx context.Context, p *scripts.Project, req runtime.FetchRequest) (*runtime.FetchResponse, error) {
	resp, err := f.client.Do(ctx, p.Egress, egress.Request{Method: req.Method, URL: req.URL, Header: req.Header,
		Body: req.Body, Redirect: egress.Redirect(req.Redirect)})
	if err != nil {
		return nil, err
	}
	return &runtime.FetchResponse{Status: resp.Status, StatusText: resp.StatusText, Header: resp.Header,
		URL: resp.URL, Redirected: resp.Redirected, Body: resp.Body}, nil
}
