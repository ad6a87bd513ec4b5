// Command historybench measures run history in the Bolt store in-process:
// it puts N runs shaped like webhook runs as the agent does (each run put
// as running, then final; the store buffers and group-commits them; Sweep
// every -sweep, as the cluster leader does), and reports at checkpoints
// the store file's size and this process's RSS (VmRSS, RssAnon, RssFile
// from /proc/self/status), then, at the end, the store file against the
// retained runs' bytes and each filter query's latency (a filter that
// matches nothing, one that matches the newest runs, combinations, a page
// behind a cursor). With -contrast it first does the same with 1,000 runs,
// so the query latencies of a small and a large history sit side by side.
//
//	go run ./bench/historybench -runs 1000000 -retention 10000
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/opsrunner/opsrunner/internal/baseline"
	"github.com/opsrunner/opsrunner/store"
)

func main() {
	runs := flag.Int("runs", 1_000_000, "runs to put")
	retention := flag.Int("retention", 10_000, "Retention.MaxRuns")
	sweep := flag.Duration("sweep", time.Minute, "how often to call Sweep, as the leader does (0: never)")
	checkpoints := flag.Int("checkpoints", 10, "how many checkpoints to print")
	contrast := flag.Bool("contrast", true, "first measure the queries at 1,000 runs too")
	maxBatch := flag.Int("maxbatch", 0, "BoltOptions.MaxBatch (0: the default, as the agent)")
	withQueries := flag.Bool("queries", true, "time the queries at the end")
	rate := flag.Int("rate", 0, "runs per second at most, like an agent's webhook load (0: as fast as the store takes them)")
	dir := flag.String("dir", "", "directory for the store files (default: a temporary one, removed at the end)")
	flag.Parse()
	if *dir == "" {
		d, err := os.MkdirTemp("", "historybench")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	ctx := context.Background()
	if *contrast {
		if err := bench(ctx, filepath.Join(*dir, "small.db"), 1000, *retention, *maxBatch, *rate, *sweep, 1, *withQueries); err != nil {
			log.Fatal(err)
		}
	}
	if err := bench(ctx, filepath.Join(*dir, "large.db"), *runs, *retention, *maxBatch, *rate, *sweep, *checkpoints, *withQueries); err != nil {
		log.Fatal(err)
	}
}

// bench puts n runs into a new store at path and prints what it measured.
func bench(ctx context.Context, path string, n, retention, maxBatch, rate int, sweepEvery time.Duration, checkpoints int, withQueries bool) error {
	fmt.Printf("== %d runs, retention %d, sweep every %v, rate %d/s (0: unpaced), MaxBatch %d (0: default)\n", n, retention, sweepEvery, rate, maxBatch)
	s, err := store.OpenBolt(path, store.BoltOptions{Retention: store.Retention{MaxRuns: retention}, MaxBatch: maxBatch})
	if err != nil {
		return err
	}
	defer s.Close()
	began, lastSweep, cpu0 := time.Now(), time.Now(), baseline.CPUTime()
	var peak rss
	every := max(n/max(checkpoints, 1), 1)
	fmt.Printf("%10s %9s %10s %9s %9s %9s\n", "runs", "elapsed", "file MiB", "RSS MiB", "anon MiB", "file-RSS")
	for i := range n {
		if err := putWebhookRun(ctx, s, i); err != nil {
			return err
		}
		if i%1000 == 999 {
			peak = peak.max(readRSS())
			if rate > 0 { // pace: run i+1 is due at (i+1)/rate s
				time.Sleep(time.Until(began.Add(time.Duration(i+1) * time.Second / time.Duration(rate))))
			}
		}
		if sweepEvery > 0 && time.Since(lastSweep) >= sweepEvery {
			if err := s.Sweep(ctx, time.Now()); err != nil {
				return err
			}
			lastSweep = time.Now()
		}
		if (i+1)%every == 0 || i == n-1 {
			if i == n-1 {
				if err := s.Flush(ctx); err != nil {
					return err
				}
			}
			r := readRSS()
			peak = peak.max(r)
			fmt.Printf("%10d %9s %10.1f %9.1f %9.1f %9.1f\n", i+1, time.Since(began).Round(time.Second),
				mib(fileSize(path)), mib(r.total), mib(r.anon), mib(r.file))
		}
	}
	fmt.Printf("put %d runs in %v, CPU %.1f µs per run\n", n, time.Since(began).Round(time.Millisecond), float64((baseline.CPUTime()-cpu0).Nanoseconds())/1e3/float64(n))
	fmt.Printf("peak RSS %.1f MiB (anon %.1f, file %.1f; sampled every 1,000 runs)\n", mib(peak.total), mib(peak.anon), mib(peak.file))
	kept, bytes, err := retained(ctx, s)
	if err != nil {
		return err
	}
	size := fileSize(path)
	fmt.Printf("stored runs %d, their JSON %.1f MiB (%.0f B/run); store file %.1f MiB = %.2fx\n",
		kept, mib(bytes), float64(bytes)/float64(max(kept, 1)), mib(size), float64(size)/float64(max(bytes, 1)))
	if withQueries {
		if err := queries(ctx, s); err != nil {
			return err
		}
	}
	if err := s.Close(); err != nil {
		return err
	}
	return printBuckets(path)
}

// printBuckets prints what each bucket of the closed store at path takes:
// keys, the bytes they use and the pages they hold, and the file's free
// pages, so the file's size can be told apart.
func printBuckets(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	ps := int64(db.Info().PageSize)
	return db.View(func(tx *bolt.Tx) error {
		fmt.Printf("  %-12s %8s %10s %10s %8s\n", "bucket", "keys", "used MiB", "pages MiB", "fill")
		var pages int64
		err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			st := b.Stats()
			pages += int64(st.LeafAlloc + st.BranchAlloc)
			printBucket(string(name), st)
			if string(name) == "rungens" {
				return printGenerations(b)
			}
			return nil
		})
		fmt.Printf("  page size %d KiB, in buckets %.2f MiB, high-water mark %.2f MiB, file %.2f MiB\n",
			ps>>10, mib(pages), mib(tx.Size()), mib(fileSize(path)))
		return err
	})
}

func printBucket(name string, st bolt.BucketStats) {
	used := int64(st.LeafInuse + st.BranchInuse)
	alloc := int64(st.LeafAlloc + st.BranchAlloc)
	fmt.Printf("  %-12s %8d %10.2f %10.2f %7.0f%%\n", name, st.KeyN, mib(used), mib(alloc), 100*float64(used)/float64(max(alloc, 1)))
}

// printGenerations prints the run buckets of the generations in gens (see
// store/bolt_gens.go) summed by name, as lines under the rungens line.
func printGenerations(gens *bolt.Bucket) error {
	sums := map[string]*bolt.BucketStats{}
	var names []string
	n := 0
	err := gens.ForEachBucket(func(k []byte) error {
		n++
		return gens.Bucket(k).ForEachBucket(func(name []byte) error {
			st := gens.Bucket(k).Bucket(name).Stats()
			sum, ok := sums[string(name)]
			if !ok {
				sum = &bolt.BucketStats{}
				sums[string(name)] = sum
				names = append(names, string(name))
			}
			sum.Add(st)
			return nil
		})
	})
	fmt.Printf("  (%d generations)\n", n)
	for _, name := range names {
		printBucket(" "+name, *sums[name])
	}
	return err
}

var operations = []string{"checkout", "refund", "quote", "lookup", "notify"}

// putWebhookRun puts run i twice, running then finished, shaped like a
// webhook run of the agent: one step, one log line, a small input and
// result. One run in a hundred fails.
func putWebhookRun(ctx context.Context, s store.Store, i int) error {
	start := time.Now().UTC()
	r := store.Run{
		ID: ulid.Make().String(), Project: "shop", Version: 3, Operation: operations[i%len(operations)],
		Trigger: "webhook", Status: store.StatusRunning, StartedAt: start, Agent: "bench-agent",
		Logs:  []store.LogLine{},
		Input: json.RawMessage(fmt.Sprintf(`{"order":%d,"sku":"SKU-%05d","qty":2,"price":42.5,"currency":"EUR"}`, i, i%10000)),
	}
	if err := s.PutRun(ctx, r); err != nil {
		return err
	}
	end := start.Add(300 * time.Microsecond)
	r.FinishedAt, r.DurationMs = &end, store.Millis(end.Sub(start))
	r.Status, r.HTTPStatus = store.StatusSucceeded, 200
	r.Logs = []store.LogLine{{Time: start, Level: "info", Message: fmt.Sprintf("order %d accepted", i)}}
	if i%100 == 99 {
		r.Status, r.Error, r.HTTPStatus = store.StatusFailed, "Error: upstream said 502", 0
	}
	r.Chain = []store.Step{{Operation: r.Operation, Status: r.Status, Error: r.Error, DurationMs: r.DurationMs}}
	r.Result = json.RawMessage(`{"status":200,"body":{"ok":true}}`)
	return s.PutRun(ctx, r)
}

// retained pages through every stored run: their count and JSON bytes.
func retained(ctx context.Context, s store.Store) (n int, bytes int64, err error) {
	before := ""
	for {
		page, err := s.Runs(ctx, store.RunFilter{Before: before, Limit: 1000})
		if err != nil {
			return 0, 0, err
		}
		for _, r := range page {
			b, err := json.Marshal(r)
			if err != nil {
				return 0, 0, err
			}
			n, bytes = n+1, bytes+int64(len(b)+len(r.ID))
		}
		if len(page) < 1000 {
			return n, bytes, nil
		}
		before = page[len(page)-1].ID
	}
}

// queries times each filter the API offers: the median and the slowest of
// 21 calls.
func queries(ctx context.Context, s store.Store) error {
	newest, err := s.Runs(ctx, store.RunFilter{Limit: 1})
	if err != nil || len(newest) == 0 {
		return fmt.Errorf("newest run: %v", err)
	}
	mid, err := s.Runs(ctx, store.RunFilter{Limit: 5000})
	if err != nil {
		return err
	}
	cursor := mid[len(mid)-1].ID
	future := time.Now().Add(time.Hour)
	for _, q := range []struct {
		name string
		f    store.RunFilter
	}{
		{"newest (no filter)", store.RunFilter{}},
		{"project=shop", store.RunFilter{Project: "shop"}},
		{"project=nosuch", store.RunFilter{Project: "nosuch"}},
		{"operation=refund", store.RunFilter{Operation: "refund"}},
		{"operation=nosuch", store.RunFilter{Operation: "nosuch"}},
		{"status=failed", store.RunFilter{Status: store.StatusFailed}},
		{"status=timed_out (none)", store.RunFilter{Status: store.StatusTimedOut}},
		{"status=failed operation=nosuch", store.RunFilter{Status: store.StatusFailed, Operation: "nosuch"}},
		{"status=failed operation=refund (none)", store.RunFilter{Status: store.StatusFailed, Operation: "refund"}},
		{"project+operation+status", store.RunFilter{Project: "shop", Operation: "checkout", Status: store.StatusSucceeded}},
		{"trigger=webhook", store.RunFilter{Trigger: "webhook"}},
		{"trigger=schedule (none)", store.RunFilter{Trigger: "schedule"}},
		{"outcome=committed (none)", store.RunFilter{Outcome: store.OutcomeCommitted}},
		{"schedule=nightly (none)", store.RunFilter{Schedule: "nightly"}},
		{"messageId=nosuch", store.RunFilter{MessageID: "nosuch"}},
		{"since=last run", store.RunFilter{Since: newest[0].StartedAt}},
		{"since=future (none)", store.RunFilter{Since: future}},
		{"before=cursor 5,000 back", store.RunFilter{Before: cursor}},
		{"before=cursor operation=quote", store.RunFilter{Before: cursor, Operation: "quote"}},
	} {
		var took []time.Duration
		var got int
		for range 21 {
			t0 := time.Now()
			runs, err := s.Runs(ctx, q.f)
			took = append(took, time.Since(t0))
			if err != nil {
				return fmt.Errorf("%s: %w", q.name, err)
			}
			got = len(runs)
		}
		slices.Sort(took)
		fmt.Printf("  %-40s %4d runs  median %8.3f ms  max %8.3f ms\n", q.name, got, ms(took[len(took)/2]), ms(took[len(took)-1]))
	}
	return nil
}

type rss struct{ total, anon, file int64 }

func (r rss) max(o rss) rss {
	return rss{max(r.total, o.total), max(r.anon, o.anon), max(r.file, o.file)}
}

// readRSS reads VmRSS, RssAnon and RssFile (bytes) from /proc/self/status.
func readRSS() rss {
	var r rss
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return r
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int64
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		fmt.Sscan(fields[1], &kb)
		switch fields[0] {
		case "VmRSS:":
			r.total = kb << 10
		case "RssAnon:":
			r.anon = kb << 10
		case "RssFile:":
			r.file = kb << 10
		}
	}
	return r
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func mib(b int64) float64        { return float64(b) / (1 << 20) }
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
