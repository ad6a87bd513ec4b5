package agent

import (
	"context"
	"sort"
	"sync/atomic"

	"github.com/opsrunner/opsrunner/api"
	"github.com/opsrunner/opsrunner/broker"
	"github.com/prometheus/client_golang/prometheus"
)

// maxBrokerDestinations bounds the destinations reported by name: clients
// name destinations, so their number has no bound of its own. The
// busiest (most messages pending and in flight) are reported.
const maxBrokerDestinations = 100

var (
	descBrokerDestinations = prometheus.NewDesc("opsrunner_broker_destinations",
		"Destinations the embedded broker holds (all of them; at most 100 are reported by name).", nil, nil)
	descBrokerDepth = prometheus.NewDesc("opsrunner_broker_queue_depth",
		"Messages waiting for a consumer, by destination (a topic: its subscriptions' added up).", []string{"destination"}, nil)
	descBrokerPendingBytes = prometheus.NewDesc("opsrunner_broker_queue_pending_bytes",
		"Body bytes of the messages waiting for a consumer, by destination.", []string{"destination"}, nil)
	descBrokerInFlight = prometheus.NewDesc("opsrunner_broker_queue_inflight",
		"Messages delivered and not yet acknowledged, by destination.", []string{"destination"}, nil)
	descBrokerConsumers = prometheus.NewDesc("opsrunner_broker_queue_consumers",
		"Subscriptions receiving from the destination.", []string{"destination"}, nil)
	descBrokerOldest = prometheus.NewDesc("opsrunner_broker_queue_oldest_message_age_seconds",
		"How long the oldest message waiting for a consumer has waited, by destination (0: none waits).", []string{"destination"}, nil)
)

// brokerCollector reports the embedded broker's destinations, read on
// each scrape (broker.Destinations); nothing while no broker runs.
type brokerCollector struct {
	broker *atomic.Pointer[broker.Broker]
}

// Describe implements prometheus.Collector.
func (c *brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBrokerDestinations, descBrokerDepth, descBrokerPendingBytes, descBrokerInFlight, descBrokerConsumers, descBrokerOldest} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *brokerCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.broker.Load()
	if b == nil {
		return
	}
	dests := busiest(b.Destinations(), maxBrokerDestinations)
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	gauge(descBrokerDestinations, len(dests.all))
	for _, s := range dests.kept {
		gauge(descBrokerDepth, s.Pending, s.Destination)
		gauge(descBrokerPendingBytes, s.PendingBytes, s.Destination)
		gauge(descBrokerInFlight, s.InFlight, s.Destination)
		gauge(descBrokerConsumers, s.Consumers, s.Destination)
		ch <- prometheus.MustNewConstMetric(descBrokerOldest, prometheus.GaugeValue, s.OldestAge.Seconds(), s.Destination)
	}
}

// destinations are all the broker's destinations and those reported.
type destinations struct{ all, kept []broker.DestinationStats }

// busiest keeps the n destinations with the most messages pending and in
// flight (ties by name).
func busiest(all []broker.DestinationStats, n int) destinations {
	if len(all) <= n {
		return destinations{all: all, kept: all}
	}
	kept := append([]broker.DestinationStats(nil), all...)
	sort.SliceStable(kept, func(i, j int) bool { // all is sorted by name
		return kept[i].Pending+kept[i].InFlight > kept[j].Pending+kept[j].InFlight
	})
	return destinations{all: all, kept: kept[:n]}
}

// BrokerDestinations implements api.BrokerStatsReader: the embedded
// broker's destinations, none when this agent runs no embedded broker.
func (a *Agent) BrokerDestinations(context.Context) ([]api.Destination, bool, error) {
	b := a.metrics.broker.Load()
	if b == nil {
		return nil, false, nil
	}
	all := b.Destinations()
	out := make([]api.Destination, 0, len(all))
	for _, s := range all {
		out = append(out, api.Destination{Destination: s.Destination, Pending: s.Pending, PendingBytes: s.PendingBytes,
			InFlight: s.InFlight, Consumers: s.Consumers, OldestMessageAgeSeconds: s.OldestAge.Seconds()})
	}
	return out, true, nil
}
