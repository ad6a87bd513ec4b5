package main

import (
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/opsrunner/opsrunner/internal/brokercaps"
	"github.com/opsrunner/opsrunner/internal/procstat"
)

// compareConfig is the send and consume rates of two opsrunner binaries on
// a small backlog (measure: n messages sent, then consumed), alternated
// over rounds so that the machine's noise falls on both alike.
type compareConfig struct {
	bin, baseline     string
	rounds            int
	n, size, prefetch int
	dir               string
}

// rates is one leg's result: messages per second, and the broker's CPU
// time per message sent and consumed in microseconds (which the other
// programs on a shared machine disturb less than the rates).
type rates struct{ send, consume, cpu float64 }

// runCompare measures both binaries each round, baseline first in even
// rounds and candidate first in odd ones, each leg on a fresh broker
// process with an empty data directory, and prints the rates and the
// ratios candidate/baseline (median and range over rounds).
func runCompare(cfg compareConfig) error {
	var cand, base []rates
	for round := range cfg.rounds {
		candidateFirst := round%2 == 1
		for leg := range 2 {
			isCandidate := (leg == 0) == candidateFirst
			bin := cfg.baseline
			if isCandidate {
				bin = cfg.bin
			}
			r, err := measureBinary(bin, cfg)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round+1, bin, err)
			}
			if isCandidate {
				cand = append(cand, r)
			} else {
				base = append(base, r)
			}
		}
		fmt.Fprintf(os.Stderr, "compare: round %d: baseline %.0f/%.0f msg/s %.1f µs/msg, candidate %.0f/%.0f msg/s %.1f µs/msg\n",
			round+1, base[round].send, base[round].consume, base[round].cpu, cand[round].send, cand[round].consume, cand[round].cpu)
	}
	fmt.Printf("brokerbench -baseline-bin: %d rounds of %d persistent %d-byte messages sent then consumed (client-individual ack, prefetch %d), alternated\n",
		cfg.rounds, cfg.n, cfg.size, cfg.prefetch)
	fmt.Printf("  baseline  %s\n  candidate %s\n", cfg.baseline, cfg.bin)
	fmt.Printf("%-10s %28s %28s %24s\n", "", "baseline median (min-max)", "candidate median (min-max)", "ratio median (min-max)")
	pick := func(rs []rates, of func(rates) float64) []float64 {
		out := make([]float64, len(rs))
		for i, r := range rs {
			out[i] = of(r)
		}
		return out
	}
	for _, leg := range []struct {
		name string
		of   func(rates) float64
	}{
		{"send/s", func(r rates) float64 { return r.send }},
		{"consume/s", func(r rates) float64 { return r.consume }},
		{"cpu µs/msg", func(r rates) float64 { return r.cpu }},
	} {
		b, c := pick(base, leg.of), pick(cand, leg.of)
		ratio := make([]float64, len(b))
		for i := range b {
			ratio[i] = c[i] / b[i] // paired by round
		}
		f := "%.0f"
		if leg.name == "cpu µs/msg" {
			f = "%.1f"
		}
		fmt.Printf("%-10s %28s %28s %24s\n", leg.name, spread(b, f), spread(c, f), spread(ratio, "%.2f"))
	}
	return nil
}

// measureBinary runs measure against a fresh broker child of bin.
func measureBinary(bin string, cfg compareConfig) (rates, error) {
	dir, err := os.MkdirTemp(cfg.dir, "brokerbench-compare-")
	if err != nil {
		return rates{}, err
	}
	defer os.RemoveAll(dir)
	p, err := newBrokerProc(bin, dir)
	if err != nil {
		return rates{}, err
	}
	defer p.kill()
	if _, err := p.startTimed(startLimit); err != nil {
		return rates{}, err
	}
	var r rates
	cpu0, err := procstat.CPU(p.pid())
	if err != nil {
		return rates{}, err
	}
	r.send, r.consume, err = measure(p.dial, brokercaps.Embedded, cfg.n, cfg.size, cfg.prefetch)
	if cpu1, cerr := procstat.CPU(p.pid()); err == nil {
		err = cerr
		r.cpu = float64((cpu1-cpu0)/time.Microsecond) / float64(cfg.n)
	}
	if _, serr := p.stop(stopLimit); err == nil {
		err = serr
	}
	return r, err
}

// spread is "median (min-max)" of xs in format f.
func spread(xs []float64, f string) string {
	s := slices.Sorted(slices.Values(xs))
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf(f+" ("+f+"-"+f+")", med, s[0], s[len(s)-1])
}
