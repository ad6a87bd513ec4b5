package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// client talks to an agent's HTTP API: over http:// or https:// as
// --server says, sending --token as the bearer token.
type client struct {
	base  string
	token string
	http  *http.Client
	err   error // a --ca-file that does not load; returned by every call
}

// addClientFlags adds the client's flags besides --server and --token to
// root: --ca-file (env OPSRUNNER_CA_FILE), the CA certificates an agent
// serving HTTPS with a private CA is checked against.
func addClientFlags(root *cobra.Command, getenv func(string) string) {
	root.PersistentFlags().String("ca-file", getenv("OPSRUNNER_CA_FILE"),
		"PEM `FILE` of the CA certificates to trust for an https:// --server, instead of the system's (env OPSRUNNER_CA_FILE)")
}

func newClient(cmd *cobra.Command) *client {
	server, _ := cmd.Flags().GetString("server")
	token, _ := cmd.Flags().GetString("token")
	caFile, _ := cmd.Flags().GetString("ca-file") // "" when the flag is not there
	c := &client{base: strings.TrimRight(server, "/"), token: token, http: &http.Client{Timeout: 5 * time.Minute}}
	if caFile != "" {
		c.http.Transport, c.err = caTransport(caFile)
	}
	return c
}

// caTransport is a transport that trusts the CA certificates of caFile
// (and no others).
func caTransport(caFile string) (http.RoundTripper, error) {
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", caFile)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return t, nil
}

// apiError is the agent's JSON error shape.
type apiError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details"`
}

// Error is the agent's message, its status and code, then its details:
// located problems as file:line:col lines, other details (a hint, the
// run, the valid values) as "key: value" lines.
func (e *apiError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%d %s)", e.Message, e.Status, e.Code)
	switch d := e.Details.(type) {
	case []any:
		for _, item := range d {
			if m, ok := item.(map[string]any); ok {
				b.WriteString("\n  ")
				writeLocated(&b, m)
			}
		}
	case map[string]any:
		if id, ok := d["runId"]; ok {
			fmt.Fprintf(&b, "\n  run %v", id)
		}
		if h, ok := d["hint"]; ok {
			fmt.Fprintf(&b, "\n  hint: %v", h)
		}
		keys := slices.Sorted(maps.Keys(d))
		for _, k := range keys {
			if k != "runId" && k != "hint" {
				fmt.Fprintf(&b, "\n  %s: %v", k, detailValue(d[k]))
			}
		}
	}
	return b.String()
}

// writeLocated writes one located problem: file:line:col: message.
func writeLocated(b *strings.Builder, m map[string]any) {
	b.WriteString(fmt.Sprint(m["file"]))
	if l, ok := m["line"]; ok {
		fmt.Fprintf(b, ":%v:%v", l, m["column"])
	}
	fmt.Fprintf(b, ": %v", m["message"])
}

// detailValue shows a list as comma-separated values.
func detailValue(v any) string {
	if list, ok := v.([]any); ok {
		parts := make([]string, len(list))
		for i, x := range list {
			parts[i] = fmt.Sprint(x)
		}
		return strings.Join(parts, ", ")
	}
	return fmt.Sprint(v)
}

// do sends a request and returns the response; non-2xx answers become errors.
func (c *client) do(ctx context.Context, method, path, contentType string, body io.Reader, header http.Header) (*http.Response, []byte, error) {
	if c.err != nil {
		return nil, nil, c.err
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	var cve *tls.CertificateVerificationError
	switch {
	case errors.As(err, &cve):
		return nil, nil, fmt.Errorf("the agent at %s: %w (a private CA? give its certificate with --ca-file)", c.base, err)
	case err != nil:
		return nil, nil, fmt.Errorf("cannot reach the agent at %s: %w (is `opsrunner serve` running? set --server)", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, nil, fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode >= 300 {
		var env struct {
			Error *apiError `json:"error"`
		}
		if json.Unmarshal(data, &env) == nil && env.Error != nil {
			env.Error.Status = resp.StatusCode
			return resp, data, env.Error
		}
		return resp, data, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	return resp, data, nil
}

func (c *client) getJSON(ctx context.Context, path string, v any) error {
	_, data, err := c.do(ctx, http.MethodGet, path, "", nil, nil)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// printJSON writes the API's JSON answer indented.
func printJSON(w io.Writer, data []byte) { _ = writeJSON(w, data) }

// send is do for a request whose answer is JSON (or empty): it returns
// the answer's bytes.
func (c *client) send(ctx context.Context, method, path, contentType string, body []byte) ([]byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	_, data, err := c.do(ctx, method, path, contentType, r, nil)
	return data, err
}

// apiPath joins /api/v1 and escaped path segments.
func apiPath(segments ...string) string {
	var b strings.Builder
	b.WriteString("/api/v1")
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}
