package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// rabbitMQServer is the Debian package's server script (run directly: the
// /usr/sbin wrapper hard-codes /var/lib/rabbitmq and its log files).
const rabbitMQServer = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// RabbitMQ returns the binary's shared RabbitMQ broker with rabbitmq_stomp,
// starting it on first use (about 10 s). Tests sharing it use unique
// destination names; a test that restarts or kills it must not run in
// parallel with others using it.
func RabbitMQ(t testing.TB) *Broker {
	t.Helper()
	return sharedBrokers.rabbitmq.get(t, "RabbitMQ", StartRabbitMQ)
}

// StartRabbitMQ starts a private RabbitMQ node (its own node name, Mnesia
// folder, Erlang cookie and distribution port; AMQP and STOMP on free
// loopback ports) with the rabbitmq_stomp plugin, as user rabbitmq when we
// are root. Login guest/guest, virtual host "/". A second STOMP listener,
// TLSAddr, speaks TLS with a test PKI and requires a client certificate
// (Broker.TLS has its files). StopAll stops it and
// removes its data at exit; the system epmd it registers with is left alone.
// A start that finds its port taken by another process is tried again on
// new ports (see onFreePorts).
func StartRabbitMQ() (*Broker, error) { return onFreePorts(startRabbitMQ) }

func startRabbitMQ() (*Broker, error) {
	if _, err := os.Stat(rabbitMQServer); err != nil {
		return nil, fmt.Errorf("RabbitMQ is not installed: %w", err)
	}
	b, port, err := newBroker(KindRabbitMQ)
	if err != nil {
		return nil, err
	}
	b.Login, b.Passcode, b.Host = "guest", "guest", "/"
	amqpPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	distPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	tlsPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	if b.TLS, err = WriteTestPKI(filepath.Join(b.Dir, "tls")); err != nil {
		return nil, err
	}
	b.TLSAddr = fmt.Sprintf("127.0.0.1:%d", tlsPort)
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	cookie := make([]byte, 20)
	_, _ = rand.Read(cookie)
	node := "opsrunner-" + hex.EncodeToString(rnd[:]) + "@localhost"

	files := []struct {
		name, text string
		mode       os.FileMode
	}{
		{"enabled_plugins", "[rabbitmq_stomp].\n", 0o644},
		{"rabbitmq.conf", fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\nstomp.listeners.tcp.1 = 127.0.0.1:%d\nloopback_users.guest = true\n"+
			"stomp.listeners.ssl.1 = %s\nssl_options.cacertfile = %s\nssl_options.certfile = %s\nssl_options.keyfile = %s\n"+
			"ssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = true\n",
			amqpPort, port, b.TLSAddr, b.TLS.CAFile, b.TLS.ServerCertFile, b.TLS.ServerKey), 0o644},
		{"rabbitmq-env.conf", "", 0o644},
		{".erlang.cookie", hex.EncodeToString(cookie), 0o400},
	}
	for _, d := range []string{"mnesia", "log"} {
		if err := os.MkdirAll(filepath.Join(b.Dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("start RabbitMQ: %w", err)
		}
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(b.Dir, f.name), []byte(f.text), f.mode); err != nil {
			return nil, fmt.Errorf("start RabbitMQ: %w", err)
		}
	}
	b.launch = func() (*exec.Cmd, error) {
		cmd := exec.Command(rabbitMQServer)
		cmd.Dir = b.Dir
		cmd.Env = append(os.Environ(),
			"HOME="+b.Dir,
			"RABBITMQ_NODENAME="+node,
			"RABBITMQ_MNESIA_BASE="+filepath.Join(b.Dir, "mnesia"),
			"RABBITMQ_LOG_BASE="+filepath.Join(b.Dir, "log"),
			"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(b.Dir, "enabled_plugins"),
			"RABBITMQ_CONFIG_FILE="+filepath.Join(b.Dir, "rabbitmq"),
			"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(b.Dir, "advanced.config"),
			"RABBITMQ_CONF_ENV_FILE="+filepath.Join(b.Dir, "rabbitmq-env.conf"),
			"RABBITMQ_PID_FILE="+filepath.Join(b.Dir, "rabbitmq.pid"),
			fmt.Sprintf("RABBITMQ_DIST_PORT=%d", distPort),
			// exec erl directly (no signal-forwarding shell): SIGTERM is a clean stop.
			"RUNNING_UNDER_SYSTEMD=true",
			// no busy-waiting schedulers on a shared 2-core machine.
			"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=+sbwt none +sbwtdcpu none +sbwtdio none",
			"ERL_EPMD_ADDRESS=127.0.0.1",
		)
		return cmd, runAs(cmd, "rabbitmq", b.Dir)
	}
	if err := b.Start(); err != nil {
		return nil, err
	}
	return b, nil
}
