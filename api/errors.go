package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v5"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/store"
)

// Error is an API error answered as {"error": {code, message, details}}.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details,omitempty"`
	// RetryAfter, when positive, is sent as the Retry-After header
	// (seconds): the agent is busy, not broken.
	RetryAfter int `json:"-"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// StatusCode lets echo know the status.
func (e *Error) StatusCode() int { return e.Status }

// Errorf builds an *Error.
func newError(status int, code, message string, details any) *Error {
	return &Error{Status: status, Code: code, Message: message, Details: details}
}

// Common error codes.
const (
	CodeBadRequest      = "bad_request"
	CodeInvalidProject  = "invalid_project"
	CodeNotFound        = "not_found"
	CodeUnauthorized    = "unauthorized"
	CodeTooLarge        = "payload_too_large"
	CodeUnsupportedType = "unsupported_media_type"
	CodeScriptError     = "script_error"
	CodeTimeout         = "timeout"
	CodeInternal        = "internal"
	CodeUnavailable     = "unavailable"
	CodeConflict        = "conflict"
	// CodeIdempotencyMismatch: an Idempotency-Key reused with another body (422).
	CodeIdempotencyMismatch = "idempotency_key_mismatch"
	// CodeInvalidJSON: a body sent as JSON that does not parse (400); the
	// details say where it broke.
	CodeInvalidJSON = "invalid_json"
	// CodeMethodNotAllowed: the route exists but not for this method (405,
	// with Allow).
	CodeMethodNotAllowed = "method_not_allowed"
	// CodeInvalidProjectName: a deploy under a name the project name rule
	// refuses (400).
	CodeInvalidProjectName = "invalid_project_name"
)

// codeForStatus is the error code of an error that carries only an HTTP
// status (echo's own errors).
func codeForStatus(status int) string {
	switch {
	case status == http.StatusNotFound:
		return CodeNotFound
	case status == http.StatusMethodNotAllowed:
		return CodeMethodNotAllowed
	case status == http.StatusRequestEntityTooLarge:
		return CodeTooLarge
	case status == http.StatusUnauthorized:
		return CodeUnauthorized
	case status == http.StatusUnsupportedMediaType:
		return CodeUnsupportedType
	case status == http.StatusServiceUnavailable:
		return CodeUnavailable
	case status >= 500:
		return CodeInternal
	}
	return CodeBadRequest
}

// asAPIError classifies any error into the JSON error shape.
func asAPIError(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		msg := he.Message
		if msg == "" {
			msg = http.StatusText(he.Code)
		}
		return newError(he.Code, codeForStatus(he.Code), msg, nil)
	}
	var sc echo.HTTPStatusCoder
	if errors.As(err, &sc) && sc.StatusCode() != 0 {
		return newError(sc.StatusCode(), codeForStatus(sc.StatusCode()), http.StatusText(sc.StatusCode()), nil)
	}
	if details := deployDetails(err); details != nil {
		return newError(http.StatusBadRequest, CodeInvalidProject, err.Error(), details)
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return newError(http.StatusRequestEntityTooLarge, CodeTooLarge, err.Error(), map[string]any{"limit": mbe.Limit})
	}
	if errors.Is(err, store.ErrNotFound) {
		return newError(http.StatusNotFound, CodeNotFound, err.Error(), nil)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return newError(http.StatusGatewayTimeout, CodeTimeout, err.Error(), nil)
	}
	return newError(http.StatusInternalServerError, CodeInternal, "internal error", nil)
}

// deployDetails lists the located problems in a deploy error, or nil when
// err is not a deploy (validation, bundle or script) error.
func deployDetails(err error) []map[string]any {
	var out []map[string]any
	var walk func(error)
	walk = func(e error) {
		var se *scripts.ScriptError
		var ve *scripts.ValidationError
		var list scripts.Errors
		switch {
		case errors.As(e, &list):
			for _, x := range list {
				walk(x)
			}
		case errors.As(e, &se):
			d := map[string]any{"file": se.File, "line": se.Line, "column": se.Column, "message": se.Message}
			if se.Stack != "" {
				d["stack"] = se.Stack
			}
			out = append(out, d)
		case errors.As(e, &ve):
			d := map[string]any{"file": ve.File, "message": ve.Message}
			if ve.Line > 0 {
				d["line"], d["column"] = ve.Line, ve.Column
			}
			if ve.Field != "" {
				d["field"] = ve.Field
			}
			out = append(out, d)
		}
	}
	walk(err)
	return out
}

// errorHandler answers every error with the JSON error shape.
func errorHandler(c *echo.Context, err error) {
	if r, _ := echo.UnwrapResponse(c.Response()); r != nil && r.Committed {
		return
	}
	ae := asAPIError(err)
	if ae.Status >= 500 && ae.Code == CodeInternal {
		c.Logger().Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "error", err)
	}
	if ae.RetryAfter > 0 {
		c.Response().Header().Set("Retry-After", strconv.Itoa(ae.RetryAfter))
	}
	_ = c.JSON(ae.Status, map[string]any{"error": ae})
}
