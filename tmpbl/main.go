package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
)

func rss(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS") || strings.HasPrefix(l, "RssAnon") || strings.HasPrefix(l, "RssFile") {
			out = append(out, strings.Join(strings.Fields(l), " "))
		}
	}
	return strings.Join(out, ", ")
}

func main() {
	addr := flag.String("addr", "127.0.0.1:61999", "")
	n := flag.Int("n", 100000, "")
	pid := flag.Int("pid", 0, "")
	mode := flag.String("mode", "fill", "fill|drain|first")
	flag.Parse()
	body := make([]byte, 1024)
	start := time.Now()
	switch *mode {
	case "fill":
		var wg sync.WaitGroup
		per := *n / 4
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := stomp.Dial("tcp", *addr)
				if err != nil {
					panic(err)
				}
				for i := 0; i < per; i++ {
					opts := []func(*frame.Frame) error{stomp.SendOpt.Header("persistent", "true")}
					if i == per-1 || i%10000 == 9999 {
						opts = append(opts, stomp.SendOpt.Receipt)
					}
					if err := c.Send("/queue/backlog", "application/octet-stream", body, opts...); err != nil {
						panic(err)
					}
				}
				c.Disconnect()
			}()
		}
		wg.Wait()
		el := time.Since(start)
		fmt.Printf("fill %d in %v: %.0f msg/s; %s\n", *n, el, float64(*n)/el.Seconds(), rss(*pid))
	case "first":
		for {
			c, err := stomp.Dial("tcp", *addr)
			if err != nil {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			t1 := time.Since(start)
			s, _ := c.Subscribe("/queue/backlog", stomp.AckClientIndividual, stomp.SubscribeOpt.Header("prefetch-count", "1"))
			<-s.C
			fmt.Printf("connected %v first message %v; %s\n", t1, time.Since(start), rss(*pid))
			c.Disconnect()
			return
		}
	case "drain":
		c, err := stomp.Dial("tcp", *addr, stomp.ConnOpt.WriteChannelCapacity(100000))
		if err != nil {
			panic(err)
		}
		s, _ := c.Subscribe("/queue/backlog", stomp.AckClientIndividual, stomp.SubscribeOpt.Header("prefetch-count", "500"))
		maxr := ""
		for i := 0; i < *n; i++ {
			m := <-s.C
			if m.Err != nil {
				panic(m.Err)
			}
			if i == *n-1 {
				c.Ack(m) // ack with receipt below
			} else {
				c.Ack(m)
			}
			if i%100000 == 0 {
				maxr = rss(*pid)
				fmt.Printf("  drained %d %s\n", i, maxr)
			}
		}
		c.Disconnect()
		el := time.Since(start)
		fmt.Printf("drain %d in %v: %.0f msg/s; %s\n", *n, el, float64(*n)/el.Seconds(), rss(*pid))
	}
}
