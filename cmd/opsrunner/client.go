package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// client talks to an agent's HTTP API.
type client struct {
	base  string
	token string
	http  *http.Client
}

func newClient(cmd *cobra.Command) *client {
	server, _ := cmd.Flags().GetString("server")
	token, _ := cmd.Flags().GetString("token")
	return &client{base: strings.TrimRight(server, "/"), token: token, http: &http.Client{Timeout: 5 * time.Minute}}
}

// apiError is the agent's JSON error shape.
type apiError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details"`
}

func (e *apiError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%d %s)", e.Message, e.Status, e.Code)
	if list, ok := e.Details.([]any); ok {
		for _, d := range list {
			if m, ok := d.(map[string]any); ok {
				b.WriteString("\n  ")
				b.WriteString(fmt.Sprint(m["file"]))
				if l, ok := m["line"]; ok {
					fmt.Fprintf(&b, ":%v:%v", l, m["column"])
				}
				fmt.Fprintf(&b, ": %v", m["message"])
			}
		}
	} else if m, ok := e.Details.(map[string]any); ok {
		if id, ok := m["runId"]; ok {
			fmt.Fprintf(&b, "\n  run %v", id)
		}
	}
	return b.String()
}

// do sends a request and returns the response; non-2xx answers become errors.
func (c *client) do(ctx context.Context, method, path, contentType string, body io.Reader, header http.Header) (*http.Response, []byte, error) {
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
	if err != nil {
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

func printJSON(w io.Writer, data []byte) {
	var buf bytes.Buffer
	if json.Indent(&buf, data, "", "  ") == nil {
		buf.WriteByte('\n')
		w.Write(buf.Bytes())
		return
	}
	w.Write(data)
}
