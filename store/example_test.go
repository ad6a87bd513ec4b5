package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opsrunner/opsrunner/store"
)

// A webhook's run is recorded twice (running, then finished) without waiting
// for the disk; reads see it at once, and Close makes it durable.
func ExampleOpenBolt() {
	dir, _ := os.MkdirTemp("", "opsrunner")
	defer os.RemoveAll(dir)
	s, err := store.OpenBolt(filepath.Join(dir, "opsrunner.db"), store.BoltOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	ctx := context.Background()

	run := store.Run{ID: "01JABCDEFGHJKMNPQRSTVWXYZ0", Project: "hello", Operation: "hello",
		Trigger: "webhook", Status: store.StatusRunning, StartedAt: time.Now()}
	_ = s.PutRun(ctx, run)
	run.Status = store.StatusSucceeded
	_ = s.PutRun(ctx, run)

	got, _ := s.Run(ctx, run.ID)
	fmt.Println(got.Status)
	// Output: succeeded
}
