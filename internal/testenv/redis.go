package testenv

import (
	"fmt"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

// RedisServer is a redis-server process owned by the test binary.
type RedisServer struct {
	// URL is "redis://127.0.0.1:PORT/0".
	URL  string
	Addr string
	port int
	mu   sync.Mutex
	cmd  *exec.Cmd
}

var redisOnce struct {
	sync.Once
	srv *RedisServer
	err error
}

// Redis returns the binary's shared Redis 7 server, starting it on first use.
// Tests that share it must use distinct key prefixes or flush it themselves.
func Redis(t testing.TB) *RedisServer {
	t.Helper()
	redisOnce.Do(func() {
		redisOnce.srv, redisOnce.err = StartRedis()
	})
	if redisOnce.err != nil {
		Unavailable(t, "redis-server", redisOnce.err)
	}
	return redisOnce.srv
}

// StartRedis starts a new, private redis-server on a free port. The caller
// may Stop it; StopAll stops it at exit otherwise.
func StartRedis() (*RedisServer, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	s := &RedisServer{port: port, Addr: fmt.Sprintf("127.0.0.1:%d", port)}
	s.URL = "redis://" + s.Addr + "/0"
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Start (re)starts the server on its port. Used by tests that restart Redis.
func (s *RedisServer) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	track(cmd)
	s.cmd = cmd
	if err := WaitTCP(s.Addr, 10*time.Second); err != nil {
		Kill(cmd)
		return err
	}
	return nil
}

// Stop kills the server (its data is lost: it keeps nothing on disk).
func (s *RedisServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	Kill(s.cmd)
	s.cmd = nil
}
