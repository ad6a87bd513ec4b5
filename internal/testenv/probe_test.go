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

// A start that finds its port taken is made again, three times at most;
// any other outcome is the answer.
func TestStartsAgainOnAPortTaken(t *testing.T) {
	other := errors.New("java is missing")
	cases := []struct {
		name    string
		results []error // what each start returns, in turn
		starts  int
		want    error
	}{
		{"started", []error{nil}, 1, nil},
		{"taken once", []error{errPortTaken, nil}, 2, nil},
		{"taken every time", []error{errPortTaken, errPortTaken, errPortTaken, nil}, 3, errPortTaken},
		{"another failure", []error{other, nil}, 1, other},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			starts := 0
			_, err := onFreePorts(func() (*Broker, error) {
				err := c.results[starts]
				starts++
				if err != nil {
					return nil, err
				}
				return &Broker{}, nil
			})
			if starts != c.starts || !errors.Is(err, c.want) {
				t.Errorf("%d starts, error %v; want %d starts, error %v", starts, err, c.starts, c.want)
			}
		})
	}
}
