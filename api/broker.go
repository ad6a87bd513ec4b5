package api

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v5"
)

// Destination is one destination of the agent's embedded broker, as GET
// /api/v1/broker/destinations lists it: a /queue/ destination, or a
// /topic/ destination with its subscriptions' queues added up.
type Destination struct {
	Destination string `json:"destination"`
	// Pending counts the messages waiting for a consumer (in memory or on
	// disk), PendingBytes their bodies' bytes.
	Pending      int `json:"pending"`
	PendingBytes int `json:"pendingBytes"`
	// InFlight counts the messages delivered and not yet acknowledged.
	InFlight  int `json:"inFlight"`
	Consumers int `json:"consumers"`
	// OldestMessageAgeSeconds is how long the oldest waiting message has
	// waited; 0 with none waiting.
	OldestMessageAgeSeconds float64 `json:"oldestMessageAgeSeconds"`
}

// BrokerStatsReader is a Backend that reports its embedded broker's
// destinations; embedded is false when the agent runs none.
type BrokerStatsReader interface {
	BrokerDestinations(ctx context.Context) (dests []Destination, embedded bool, err error)
}

// brokerDestinations serves GET /api/v1/broker/destinations: the
// embedded broker's destinations by name, for operators (admin only:
// destination names are not scoped to projects).
func (s *server) brokerDestinations(c *echo.Context) error {
	r, ok := s.b.(BrokerStatsReader)
	if !ok {
		return newError(http.StatusNotImplemented, CodeNotImplemented, "this server has no embedded broker statistics", nil)
	}
	dests, embedded, err := r.BrokerDestinations(c.Request().Context())
	if err != nil {
		return err
	}
	if dests == nil {
		dests = []Destination{}
	}
	return c.JSON(http.StatusOK, map[string]any{"embedded": embedded, "destinations": dests})
}
