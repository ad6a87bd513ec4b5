package testenv

import (
	"errors"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

// A STOMP port that answers as another kind of broker than the one started
// on it was taken by another process: the probe says so, so that the
// broker is started again on new ports instead of tests talking to a
// stranger.
func TestProbeTellsAnotherBrokerOnThePort(t *testing.T) {
	b := Embedded(t)
	if err := probeSTOMP(b); err != nil {
		t.Fatalf("probe of the embedded broker: %v", err)
	}
	for _, kind := range []string{KindActiveMQ, KindRabbitMQ} {
		other := &Broker{Kind: kind, Addr: b.Addr, Host: b.Host, Login: b.Login, Passcode: b.Passcode}
		if err := probeSTOMP(other); !errors.Is(err, errPortTaken) {
			t.Errorf("probe for %s of the embedded broker's port: %v, want errPortTaken", kind, err)
		}
	}
}
