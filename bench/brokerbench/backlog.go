package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/go-stomp/stomp/v3/frame"

	"github.com/opsrunner/opsrunner/internal/brokercaps"
	"github.com/opsrunner/opsrunner/internal/stompc"
)

// backlogConfig is what the backlog benchmark measures.
type backlogConfig struct {
	bin       string        // the opsrunner binary
	levels    []int         // queued messages at each checkpoint after 0, ascending
	size      int           // body bytes
	dir       string        // where the broker's data goes ("" is the system's temporary folder)
	producers int           // connections filling the queue
	consumers int           // connections draining it
	prefetch  int           // drain consumers' prefetch
	settle    time.Duration // wait after the drain and after the restart that follows, for compaction
}

const (
	backlogQueue = "/queue/brokerbench.backlog"
	startLimit   = 5 * time.Minute // a start replaying millions of messages may be slow
	stopLimit    = 5 * time.Minute
)

// checkpoint is what the broker looked like with queued messages waiting.
type checkpoint struct {
	queued    int
	fillRate  float64 // msg/s of the fill from the previous checkpoint; 0 for none
	fillPeak  memory  // highest memory during that fill
	mem       memory  // with the backlog queued, before the restart
	disk      diskUse
	stopTook  time.Duration // SIGTERM to exit
	connected time.Duration // process start to CONNECTED
	first     time.Duration // process start to the first MESSAGE; 0 with nothing queued
	restarted memory        // right after the restart (and the first MESSAGE)
}

// drainResult is the drain of the whole backlog.
type drainResult struct {
	n        int
	rate     float64
	peak     memory
	settled  memory     // after the drain and the settle wait
	disk     [4]diskUse // right after; after settle; after a restart; after restart and settle
	peakDisk diskUse
}

// runBacklog fills one queue level by level, measures each checkpoint and
// drains the backlog, then prints the table. Levels that do not fit on the
// disk are skipped, and said so.
func runBacklog(cfg backlogConfig) error {
	dir, err := os.MkdirTemp(cfg.dir, "brokerbench-backlog-")
	if err != nil {
		return fmt.Errorf("backlog: %w", err)
	}
	defer os.RemoveAll(dir)
	p, err := newBrokerProc(cfg.bin, dir)
	if err != nil {
		return err
	}
	defer p.kill()
	if _, err := p.startTimed(startLimit); err != nil {
		return err
	}
	var (
		cps     []checkpoint
		skipped []int
		queued  int
	)
	levels := append([]int{0}, cfg.levels...)
	for i, level := range levels {
		cp := checkpoint{queued: level}
		if level > queued {
			if err := fitsOnDisk(dir, p.dataDir, level, cfg.size); err != nil {
				fmt.Printf("backlog: skipping %d and above: %v\n", level, err)
				skipped = levels[i:]
				break
			}
			sm := sampleMemory(p.pid())
			cp.fillRate, err = fill(p, level-queued, queued, cfg.size, cfg.producers)
			cp.fillPeak = sm.stop()
			if err != nil {
				return fmt.Errorf("fill to %d: %w", level, err)
			}
			queued = level
		}
		if err := measureCheckpoint(p, &cp); err != nil {
			return fmt.Errorf("checkpoint %d: %w", level, err)
		}
		cps = append(cps, cp)
		fmt.Fprintf(os.Stderr, "backlog: %d queued measured\n", level)
	}
	var dr *drainResult
	if queued > 0 {
		if dr, err = drainBacklog(p, cfg, queued); err != nil {
			return fmt.Errorf("drain %d: %w", queued, err)
		}
		for _, cp := range cps {
			dr.peakDisk.Size = max(dr.peakDisk.Size, cp.disk.Size)
			dr.peakDisk.Allocated = max(dr.peakDisk.Allocated, cp.disk.Allocated)
		}
	}
	printBacklog(cfg, dir, cps, skipped, dr)
	return nil
}

// fitsOnDisk checks that the file system can take the data directory grown
// to level messages: twice their bodies and 512 bytes each, plus 1 GiB to
// spare for everything else on the machine.
func fitsOnDisk(dir, dataDir string, level, size int) error {
	free, err := freeDisk(dir)
	if err != nil {
		return err
	}
	used, err := measureDisk(dataDir)
	if err != nil {
		return err
	}
	need := 2*int64(level)*int64(size+512) + 1<<30 - used.Allocated
	if need > free {
		return fmt.Errorf("needs about %d MiB, %d MiB free", need>>20, free>>20)
	}
	return nil
}

// measureCheckpoint reads memory and disk with cp.queued messages queued,
// restarts the broker and times it.
func measureCheckpoint(p *brokerProc, cp *checkpoint) error {
	var err error
	if cp.mem, err = readMemory(p.pid()); err != nil {
		return err
	}
	if cp.disk, err = measureDisk(p.dataDir); err != nil {
		return err
	}
	if cp.stopTook, err = p.stop(stopLimit); err != nil {
		return err
	}
	if cp.connected, err = p.startTimed(startLimit); err != nil {
		return err
	}
	if cp.queued > 0 {
		t0 := time.Now().Add(-cp.connected) // the process's start
		if err := p.firstMessage(backlogQueue, startLimit); err != nil {
			return err
		}
		cp.first = time.Since(t0)
	}
	cp.restarted, err = readMemory(p.pid())
	return err
}

// fill sends n persistent messages of size bytes to the backlog queue over
// producers connections; each connection's last SEND asks for a receipt,
// so when fill returns, the broker has taken them all. Bodies start with
// their sequence number (from first on). It returns messages per second.
func fill(p *brokerProc, n, first, size, producers int) (float64, error) {
	errs := make(chan error, producers)
	t0 := time.Now()
	for i := range producers {
		lo, hi := first+n*i/producers, first+n*(i+1)/producers
		go func() { errs <- produce(p, lo, hi, size) }() // owner: fill, which waits for each
	}
	var err error
	for range producers {
		err = errors.Join(err, <-errs)
	}
	return float64(n) / time.Since(t0).Seconds(), err
}

// produce sends the messages numbered lo to hi-1 over one connection,
// the last with a receipt, and waits for that receipt. Frames are written
// raw through a buffer: the fill is not what is measured, and a client
// that reads nothing until the end must not time out on heart-beats.
func produce(p *brokerProc, lo, hi, size int) error {
	nc, err := net.DialTimeout("tcp", p.addr, 10*time.Second)
	if err != nil {
		return fmt.Errorf("connect producer: %w", err)
	}
	defer nc.Close()
	w := bufio.NewWriterSize(nc, 64<<10)
	r := frame.NewReader(nc)
	w.WriteString("CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\n\n\x00")
	if err := w.Flush(); err != nil {
		return fmt.Errorf("connect producer: %w", err)
	}
	if f, err := readFrame(r); err != nil || f.Command != frame.CONNECTED {
		return fmt.Errorf("connect producer: %v %v", f, err)
	}
	body := bytes.Repeat([]byte("b"), max(size, 12))
	for i := lo; i < hi; i++ {
		copy(body, fmt.Sprintf("%011d ", i))
		receipt := ""
		if i == hi-1 {
			receipt = "receipt:end\n"
		}
		fmt.Fprintf(w, "SEND\ndestination:%s\npersistent:true\n%scontent-length:%d\n\n", backlogQueue, receipt, len(body))
		w.Write(body)
		if err := w.WriteByte(0); err != nil {
			return fmt.Errorf("send %d: %w", i, err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if f, err := readFrame(r); err != nil || f.Command != frame.RECEIPT {
		return fmt.Errorf("receipt of the last send: %v %v", f, err)
	}
	return nil
}

// readFrame reads the next frame, skipping heart-beats.
func readFrame(r *frame.Reader) (*frame.Frame, error) {
	for {
		f, err := r.Read()
		if err != nil || f != nil {
			return f, err
		}
	}
}

// drainBacklog consumes the n queued messages, then reads the disk use at
// the four points of drainResult.disk.
func drainBacklog(p *brokerProc, cfg backlogConfig, n int) (*drainResult, error) {
	dr := &drainResult{n: n}
	sm := sampleMemory(p.pid())
	t0 := time.Now()
	err := consumeAll(p, n, cfg.consumers, cfg.prefetch)
	dr.rate = float64(n) / time.Since(t0).Seconds()
	dr.peak = sm.stop()
	if err != nil {
		return nil, err
	}
	steps := []func() error{
		func() error { return nil },
		func() error { time.Sleep(cfg.settle); return nil },
		func() error {
			if _, err := p.stop(stopLimit); err != nil {
				return err
			}
			_, err := p.startTimed(startLimit)
			return err
		},
		func() error { time.Sleep(cfg.settle); return nil },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
		if dr.disk[i], err = measureDisk(p.dataDir); err != nil {
			return nil, err
		}
		if i == 1 {
			if dr.settled, err = readMemory(p.pid()); err != nil {
				return nil, err
			}
		}
	}
	return dr, nil
}

// consumeAll drains n messages from the backlog queue with consumers
// connections (client-individual ack of each message, prefetch). Each
// connection ends with a DISCONNECT receipt, which the broker sends after
// applying its ACKs. It fails when no message arrives for a minute.
func consumeAll(p *brokerProc, n, consumers, prefetch int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var total atomic.Int64
	errs := make(chan error, consumers)
	for range consumers {
		go func() { // owner: consumeAll, which waits for each
			err := consume(ctx, p, &total, int64(n), prefetch)
			cancel() // done or failed: the others stop too
			errs <- err
		}()
	}
	var err error
	last, lastAt := int64(-1), time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for running := consumers; running > 0; {
		select {
		case e := <-errs:
			err = errors.Join(err, e)
			running--
		case <-tick.C:
			if now := total.Load(); now != last {
				last, lastAt = now, time.Now()
			} else if time.Since(lastAt) > time.Minute && ctx.Err() == nil {
				err = errors.Join(err, fmt.Errorf("drain stalled at %d of %d messages", now, n))
				cancel()
			}
		}
	}
	if got := total.Load(); err == nil && got < int64(n) {
		err = fmt.Errorf("drain ended at %d of %d messages", got, n)
	}
	return err
}

// consume is one drain connection: it acks each message until the
// connections together have taken n, or ctx ends; then it disconnects.
func consume(ctx context.Context, p *brokerProc, total *atomic.Int64, n int64, prefetch int) error {
	c, err := p.connect(10 * time.Second)
	if err != nil {
		return fmt.Errorf("connect consumer: %w", err)
	}
	defer c.Close()
	if err := c.Subscribe(backlogQueue, brokercaps.For(brokercaps.Embedded).PrefetchOption(prefetch)); err != nil {
		return err
	}
	stop := c.StopOn(ctx)
	defer stop()
	for total.Load() < n {
		m, err := c.Next()
		if errors.Is(err, stompc.ErrStopped) {
			break
		}
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		if err := c.Ack(m); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
		total.Add(1)
	}
	return c.Disconnect()
}

// The targets, printed beside the figures they judge.
const (
	targetRSS      = 128 << 20              // VmRSS at 1M and at 3M queued
	targetRestart  = 500 * time.Millisecond // start to first MESSAGE at 1M
	targetDiskLeft = 0.10                   // disk after draining, of the peak
)

// printBacklog prints the checkpoints, the drain and the targets.
func printBacklog(cfg backlogConfig, dir string, cps []checkpoint, skipped []int, dr *drainResult) {
	fmt.Printf("brokerbench -backlog: %s, persistent %d-byte messages on one queue, %d producers (a receipt at the end of each), data under %s\n",
		cfg.bin, cfg.size, cfg.producers, dir)
	fmt.Printf("%9s %9s %22s %9s %19s %8s %10s %10s %16s\n",
		"queued", "fill/s", "VmRSS/Anon/File MiB", "fill peak", "disk size/alloc MiB", "stop", "→CONNECTED", "→MESSAGE", "after restart MiB")
	for _, cp := range cps {
		fillRate, fillPeak, first := "-", "-", "-"
		if cp.fillRate > 0 {
			fillRate, fillPeak = fmt.Sprintf("%.0f", cp.fillRate), mib(cp.fillPeak.VmRSS)
		}
		if cp.first > 0 {
			first = ms(cp.first)
		}
		fmt.Printf("%9d %9s %22s %9s %19s %8s %10s %10s %16s\n",
			cp.queued, fillRate, mib3(cp.mem), fillPeak, mib2(cp.disk.Size, cp.disk.Allocated),
			ms(cp.stopTook), ms(cp.connected), first, mib2(cp.restarted.VmRSS, cp.restarted.RssAnon))
	}
	for _, level := range skipped {
		fmt.Printf("%9d skipped: not enough free disk\n", level)
	}
	if dr != nil {
		fmt.Printf("drain of %d: %.0f msg/s (%d consumers, client-individual ack, prefetch %d); peak VmRSS/Anon/File %s MiB; after %s: %s MiB\n",
			dr.n, dr.rate, cfg.consumers, cfg.prefetch, mib3(dr.peak), cfg.settle, mib3(dr.settled))
		fmt.Printf("disk after the drain, allocated MiB (of peak %s): right after %s, after %s %s, after a restart %s, and %s later %s\n",
			mib(dr.peakDisk.Allocated), diskOfPeak(dr.disk[0], dr.peakDisk), cfg.settle, diskOfPeak(dr.disk[1], dr.peakDisk),
			diskOfPeak(dr.disk[2], dr.peakDisk), cfg.settle, diskOfPeak(dr.disk[3], dr.peakDisk))
	}
	printTargets(cps, dr)
}

// printTargets judges the figures against the targets.
func printTargets(cps []checkpoint, dr *drainResult) {
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	for _, cp := range cps {
		if cp.queued == 1_000_000 || cp.queued == 3_000_000 {
			fmt.Printf("target VmRSS <= %d MiB at %d queued: %s MiB, %s\n", targetRSS>>20, cp.queued, mib(cp.mem.VmRSS), verdict(cp.mem.VmRSS <= targetRSS))
		}
		if cp.queued == 1_000_000 {
			fmt.Printf("target restart to first MESSAGE <= %s at 1000000 queued: %s, %s\n", targetRestart, ms(cp.first), verdict(cp.first <= targetRestart))
		}
	}
	if dr != nil && dr.peakDisk.Allocated > 0 {
		best := min(dr.disk[0].Allocated, dr.disk[1].Allocated, dr.disk[2].Allocated, dr.disk[3].Allocated)
		share := float64(best) / float64(dr.peakDisk.Allocated)
		fmt.Printf("target disk after draining <= %.0f%% of peak: %.1f%% at best, %s\n", targetDiskLeft*100, share*100, verdict(share <= targetDiskLeft))
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond)) }
func mib(n int64) string        { return fmt.Sprintf("%.0f", float64(n)/(1<<20)) }
func mib2(a, b int64) string    { return mib(a) + "/" + mib(b) }
func mib3(m memory) string      { return mib(m.VmRSS) + "/" + mib(m.RssAnon) + "/" + mib(m.RssFile) }

func diskOfPeak(d, peak diskUse) string {
	if peak.Allocated == 0 {
		return mib(d.Allocated)
	}
	return fmt.Sprintf("%s (%.0f%%)", mib(d.Allocated), 100*float64(d.Allocated)/float64(peak.Allocated))
}
