package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/opsrunner/opsrunner/cluster"
	"github.com/opsrunner/opsrunner/store"
	"github.com/redis/go-redis/v9"
)

// redisPrefix namespaces every key opsrunner writes in a cluster's Redis.
const redisPrefix = "opsrunner:"

// openRedis opens the cluster's shared store and coordinator.
func openRedis(cfg Config) (*redis.Client, store.Store, cluster.Coordinator, error) {
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("redis url: %w", err)
	}
	client := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		client.Close()
		return nil, nil, nil, fmt.Errorf("redis %s: %w", cfg.RedisURL, err)
	}
	st, err := store.OpenRedis(client, redisPrefix, store.RedisOptions{
		Retention: store.Retention{MaxRuns: cfg.RunRetention.MaxRuns, MaxAge: time.Duration(cfg.RunRetention.MaxAge)},
	})
	if err != nil {
		client.Close()
		return nil, nil, nil, fmt.Errorf("open redis store: %w", err)
	}
	return client, st, cluster.NewRedis(client, redisPrefix, cluster.RedisOptions{MemberTTL: 3 * time.Second}), nil
}
