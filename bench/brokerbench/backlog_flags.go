package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// runBinaries runs -backlog (when levels is not empty) and -baseline-bin
// (when baseline is not empty) on bin, built first when it is "". The
// backlog's bodies are 1 KiB unless -size was given.
func runBinaries(levels []int, bin, baseline, dir string, sizeSet bool, bc backlogConfig, cc compareConfig) error {
	if bin == "" {
		tmp, err := os.MkdirTemp("", "brokerbench-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		if bin, err = buildOpsrunner(tmp); err != nil {
			return err
		}
	}
	if baseline != "" {
		cc.bin, cc.baseline, cc.dir = bin, baseline, dir
		if err := runCompare(cc); err != nil {
			return err
		}
	}
	if len(levels) > 0 {
		bc.bin, bc.levels, bc.dir = bin, levels, dir
		if !sizeSet {
			bc.size = 1024
		}
		return runBacklog(bc)
	}
	return nil
}

// parseLevels reads "100000,1000000" into ascending positive counts.
func parseLevels(s string) ([]int, error) {
	var levels []int
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v <= 0 || (len(levels) > 0 && v <= levels[len(levels)-1]) {
			return nil, fmt.Errorf("-backlog %q: want ascending positive counts", s)
		}
		levels = append(levels, v)
	}
	return levels, nil
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
