package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v5"
	"github.com/opsrunner/opsrunner/store"
)

// CodeNotImplemented: the server's Backend cannot do what the route asks (501).
const CodeNotImplemented = "not_implemented"

// ManageBackend is what the management endpoints beyond deploy and
// listing need: deleting a project, deleting one dead letter, and what a
// client needs to know of the agent. (GET /api/v1/deadletters/{id} needs
// the Backend to be a DeadLetterReader too.) Methods are goroutine-safe
// and honour ctx; "not there" is an error wrapping store.ErrNotFound.
type ManageBackend interface {
	// DeleteProject deletes every version of a project and stops its
	// listeners and webhooks on every agent (runs in flight finish). Its
	// runs, dead letters and secrets are kept.
	DeleteProject(ctx context.Context, project string) error
	// DeleteDeadLetter deletes a stored dead letter without replaying it.
	DeleteDeadLetter(ctx context.Context, id string) error
	// Info describes the agent answering.
	Info(ctx context.Context) (Info, error)
}

// Info is the answer of GET /api/v1/info: which agent answers and where
// its broker is, so that a client given only the agent's URL can send
// messages to it. It never carries credentials.
type Info struct {
	Version string `json:"version"`
	Agent   string `json:"agent"`
	// BrokerURL is the "default" connection's broker as
	// stomp://host:port or stomp+ssl://host:port, without credentials;
	// BrokerAddr is its host:port. A host the agent listens on for every
	// interface (0.0.0.0, ::) stands for the agent's own host.
	BrokerURL  string `json:"brokerUrl"`
	BrokerAddr string `json:"brokerAddr"`
	// EmbeddedBroker is true when that broker is the agent's own.
	EmbeddedBroker bool `json:"embeddedBroker"`
	// BrokerWSAddr is where the embedded broker serves STOMP over
	// WebSocket (path /stomp); empty when it does not.
	BrokerWSAddr string `json:"brokerWsAddr,omitempty"`
}

// deleteProject serves DELETE /api/v1/projects/{project}: 204, or 404 for
// a project with no version.
func (s *server) deleteProject(c *echo.Context) error {
	project := param(c, "project")
	if err := s.b.DeleteProject(c.Request().Context(), project); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return newError(http.StatusNotFound, CodeNotFound, "no project "+strconv.Quote(project), nil)
		}
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// deadLetter serves GET /api/v1/deadletters/{id}: the dead letter with
// its body and headers; 501 from a Backend that is no DeadLetterReader.
func (s *server) deadLetter(c *echo.Context) error {
	id := param(c, "id")
	r, ok := s.b.(DeadLetterReader)
	if !ok {
		return newError(http.StatusNotImplemented, CodeNotImplemented, "this server cannot read one dead letter; list them instead", nil)
	}
	dl, err := r.DeadLetter(c.Request().Context(), id)
	if err != nil {
		return deadLetterError(id, err)
	}
	return c.JSON(http.StatusOK, dl)
}

// deleteDeadLetter serves DELETE /api/v1/deadletters/{id}: 204, the
// message is dropped without a replay.
func (s *server) deleteDeadLetter(c *echo.Context) error {
	id := param(c, "id")
	if err := s.b.DeleteDeadLetter(c.Request().Context(), id); err != nil {
		return deadLetterError(id, err)
	}
	return c.NoContent(http.StatusNoContent)
}

// deadLetterError makes "not found" a 404 naming the dead letter.
func deadLetterError(id string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return newError(http.StatusNotFound, CodeNotFound, "no dead letter "+strconv.Quote(id), nil)
	}
	return err
}

// info serves GET /api/v1/info.
func (s *server) info(c *echo.Context) error {
	in, err := s.b.Info(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, in)
}
