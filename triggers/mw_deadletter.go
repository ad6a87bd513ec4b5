package triggers

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"strconv"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/opsrunner/opsrunner/store"
)

// deadLetters is where a listener's dead letters go.
type deadLetters struct {
	pol   policy
	spec  ListenerSpec
	agent string
	store store.Store // nil: published but not recorded
	log   *slog.Logger
}

// DeadLetter settles a delivery whose failed operations used up the
// redelivery policy: in one transaction it acknowledges the message,
// publishes the committed operations' sends, and publishes the dead letter
// (to the dead-letter destination, with the cause headers and the
// operations that failed), then records it in the store.
func DeadLetter(dl deadLetters) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, d *Delivery) error {
			err := next(ctx, d)
			failed, cause := d.Failed()
			if !failed || d.Settled() || d.auto {
				return err
			}
			attempts := d.msg.Attempt
			if errors.Is(cause, ErrUnsettled) {
				attempts-- // this delivery started nothing
			}
			if !dl.pol.deadLetterDue(attempts) {
				return err
			}
			return dl.send(context.WithoutCancel(ctx), d, attempts, cause)
		}
	}
}

func (dl deadLetters) send(ctx context.Context, d *Delivery, attempts int, cause error) error {
	now := time.Now().UTC()
	errText := "rolled back"
	if cause != nil {
		errText = cause.Error()
	}
	user := copyHeaders(d.msg.Headers.All(), causeHeaders)
	if ops := d.failedOps(); ops != "" {
		user[HeaderOperations] = ops
	}
	h := maps.Clone(user)
	h[HeaderError] = errText
	h[HeaderAttempts] = strconv.Itoa(attempts)
	h[HeaderOriginalDestination] = dl.spec.Listener.Destination
	h[HeaderOriginalMessageID] = d.msg.ID
	h[HeaderAgent] = dl.agent
	h[HeaderFailedAt] = now.Format(time.RFC3339Nano)
	h["persistent"] = "true"
	c := Outgoing{Destination: dl.pol.deadLetter, Body: d.msg.Body, Headers: h}
	if err := d.settle(ctx, deadLetterCopy, &c); err != nil {
		return err
	}
	dl.record(ctx, d, user, attempts, errText, now)
	return nil
}

func (dl deadLetters) record(ctx context.Context, d *Delivery, headers map[string]string, attempts int, errText string, now time.Time) {
	if dl.store == nil {
		return
	}
	rec := store.DeadLetter{
		ID: ulid.Make().String(), Project: dl.spec.Project, Listener: dl.spec.ID, MessageID: d.msg.ID,
		Destination: dl.spec.Listener.Destination, DeadLetterDestination: dl.pol.deadLetter,
		Attempts: attempts, Error: errText, FailedAt: now, Body: string(d.msg.Body), Headers: headers, Agent: dl.agent,
	}
	switch r := dl.pol.retention; {
	case r > 0:
		rec.ExpiresAt = now.Add(time.Duration(r) * time.Minute)
	case r == 0:
		rec.ExpiresAt = now.Add(7 * 24 * time.Hour)
	}
	if err := dl.store.PutDeadLetter(ctx, rec); err != nil {
		dl.log.Error("record dead letter", "listener", dl.spec.ID, "message", d.msg.ID, "err", err)
	}
}
