package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

// load is wrk's settings, the same for every leg.
type load struct {
	conns, threads int
	duration       time.Duration
	timeout        time.Duration // wrk's: a request unanswered this long is a socket error, left out of the latencies
	script         string        // wrk's Lua script, which makes each request a POST of requestBody
}

// requestBody is what each webhook request posts (the servers ignore it).
const requestBody = `{"order": 7}`

// writeWrkScript writes the Lua script making wrk's requests POSTs of
// requestBody into dir and returns its path.
func writeWrkScript(dir string) (string, error) {
	path := filepath.Join(dir, "post.lua")
	lua := fmt.Sprintf("wrk.method = \"POST\"\nwrk.body = %q\nwrk.headers[\"Content-Type\"] = \"application/json\"\n", requestBody)
	if err := os.WriteFile(path, []byte(lua), 0o644); err != nil {
		return "", fmt.Errorf("wrk script: %w", err)
	}
	return path, nil
}

// wrkResult is what one wrk run reports.
type wrkResult struct {
	rps       float64
	requests  int // completed
	p50, p99  time.Duration
	non2xx    int // "Non-2xx or 3xx responses"
	sockErrs  int // connect, read, write and timeout errors
	rawOutput []byte
}

var (
	reRPS      = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	reRequests = regexp.MustCompile(`(\d+) requests in `)
	reP        = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\b`)
	reNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	reSockErrs = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// runWrk loads url with POST requests for l.duration (or d when not zero).
func runWrk(ctx context.Context, url string, l load, d time.Duration) (wrkResult, error) {
	if d == 0 {
		d = l.duration
	}
	out, err := exec.CommandContext(ctx, "wrk", "-t", strconv.Itoa(l.threads), "-c", strconv.Itoa(l.conns),
		"-d", d.String(), "--timeout", l.timeout.String(), "--latency", "-s", l.script, url).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %v\n%s", url, err, out)
	}
	return parseWrk(out)
}

// parseWrk reads wrk --latency's report.
func parseWrk(out []byte) (wrkResult, error) {
	r := wrkResult{rawOutput: out}
	m := reRPS.FindSubmatch(out)
	n := reRequests.FindSubmatch(out)
	if m == nil || n == nil {
		return r, fmt.Errorf("no Requests/sec in wrk output:\n%s", out)
	}
	r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	r.requests, _ = strconv.Atoi(string(n[1]))
	for _, p := range reP.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(p[2]), 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[string(p[3])]
		dur := time.Duration(v * float64(unit)).Round(10 * time.Microsecond)
		if string(p[1]) == "50" {
			r.p50 = dur
		} else {
			r.p99 = dur
		}
	}
	if m := reNon2xx.FindSubmatch(out); m != nil {
		r.non2xx, _ = strconv.Atoi(string(m[1]))
	}
	if m := reSockErrs.FindSubmatch(out); m != nil {
		for _, g := range m[1:] {
			v, _ := strconv.Atoi(string(g))
			r.sockErrs += v
		}
	}
	return r, nil
}
