package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opsrunner/opsrunner/cluster"
)

// A delivery claims its dedup key, checks the lease before committing
// (fencing) and marks the key processed after the commit.
func ExampleLocal() {
	ctx := context.Background()
	c := cluster.NewLocal("agent-1")
	defer c.Close()

	lease, err := c.Acquire(ctx, "msg-42", 30*time.Second)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lease.Release(ctx)
	if _, err := c.Acquire(ctx, "msg-42", 30*time.Second); errors.Is(err, cluster.ErrHeld) {
		fmt.Println("second claim: held")
	}
	if err := lease.Check(ctx); err == nil {
		fmt.Println("lease still ours: commit")
		_ = c.MarkProcessed(ctx, "msg-42", time.Hour)
	}
	done, _ := c.Processed(ctx, "msg-42")
	fmt.Println("processed:", done)
	// Output:
	// second claim: held
	// lease still ours: commit
	// processed: true
}
