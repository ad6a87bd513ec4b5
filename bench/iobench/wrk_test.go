package main

import (
	"testing"
	"time"
)

// A wrk --latency report with every line parseWrk reads.
const wrkReport = `Running 3s test @ http://127.0.0.1:32895/hooks/iobench/hook
  2 threads and 200 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   193.46ms    1.75ms 195.45ms   50.00%
    Req/Sec   139.40    200.54   477.00     80.00%
  Latency Distribution
     50%  193.99ms
     75%  195.45ms
     90%  195.45ms
     99%    1.02s 
  199 requests in 3.01s, 32.45KB read
  Socket errors: connect 1, read 2, write 3, timeout 195
  Non-2xx or 3xx responses: 7
Requests/sec:     66.22
Transfer/sec:     10.80KB
`

func TestParseWrkReadsRateLatenciesAndEveryError(t *testing.T) {
	r, err := parseWrk([]byte(wrkReport))
	if err != nil {
		t.Fatal(err)
	}
	if r.rps != 66.22 || r.requests != 199 {
		t.Errorf("rate: got %v req/s, %d requests; want 66.22, 199", r.rps, r.requests)
	}
	if r.p50 != 193990*time.Microsecond || r.p99 != 1020*time.Millisecond {
		t.Errorf("latencies: got p50 %s p99 %s; want 193.99ms 1.02s", r.p50, r.p99)
	}
	if r.non2xx != 7 || r.sockErrs != 201 {
		t.Errorf("errors: got %d non-2xx and %d socket errors; want 7 and 201", r.non2xx, r.sockErrs)
	}
}

func TestParseWrkFailsWithoutARate(t *testing.T) {
	if _, err := parseWrk([]byte("unable to connect to 127.0.0.1:1 Connection refused\n")); err == nil {
		t.Fatal("want an error for a report without Requests/sec")
	}
}
