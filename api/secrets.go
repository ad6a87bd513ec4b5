package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v5"
	"github.com/opsrunner/opsrunner/scripts"
	"github.com/opsrunner/opsrunner/secrets"
	"github.com/opsrunner/opsrunner/store"
)

// CodeInvalidSecret: a secret name or value the rules refuse (400); the
// details' field says which ("name" or "value").
const CodeInvalidSecret = "invalid_secret"

// putSecret serves PUT /api/v1/projects/{project}/secrets/{name}: the body
// is the value, as is. 204 when stored.
func (s *server) putSecret(c *echo.Context) error {
	project, name, err := secretParams(c)
	if err != nil {
		return err
	}
	value, err := io.ReadAll(io.LimitReader(c.Request().Body, secrets.MaxValueBytes+1))
	if err != nil {
		return newError(http.StatusBadRequest, CodeBadRequest, "read body: "+err.Error(), nil)
	}
	if err := secrets.CheckValue(value); err != nil {
		if len(value) > secrets.MaxValueBytes { // only the first bytes were read
			err = fmt.Errorf("secret value is longer than 64 KiB (%d bytes)", secrets.MaxValueBytes)
		}
		return invalidSecret(err, "value")
	}
	if err := s.b.PutSecret(c.Request().Context(), project, name, value); err != nil {
		if errors.Is(err, secrets.ErrInvalid) {
			return invalidSecret(err, "")
		}
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// listSecrets serves GET /api/v1/projects/{project}/secrets: names and
// update times, never values.
func (s *server) listSecrets(c *echo.Context) error {
	project := param(c, "project")
	if err := scripts.ValidProjectName(project); err != nil {
		return newError(http.StatusBadRequest, CodeInvalidProjectName, err.Error(), nil)
	}
	list, err := s.b.Secrets(c.Request().Context(), project)
	if err != nil {
		return err
	}
	if list == nil {
		list = []store.SecretInfo{}
	}
	return c.JSON(http.StatusOK, map[string]any{"secrets": list})
}

// deleteSecret serves DELETE /api/v1/projects/{project}/secrets/{name}:
// 204, or 404 when the secret is not set.
func (s *server) deleteSecret(c *echo.Context) error {
	project, name, err := secretParams(c)
	if err != nil {
		return err
	}
	err = s.b.DeleteSecret(c.Request().Context(), project, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return newError(http.StatusNotFound, CodeNotFound,
			fmt.Sprintf("no secret %s in project %s", strconv.Quote(name), strconv.Quote(project)), nil)
	case errors.Is(err, secrets.ErrInvalid):
		return invalidSecret(err, "")
	case err != nil:
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// secretParams reads and checks a secret's project and name from the path.
func secretParams(c *echo.Context) (project, name string, err error) {
	project, name = param(c, "project"), param(c, "name")
	if err := scripts.ValidProjectName(project); err != nil {
		return "", "", newError(http.StatusBadRequest, CodeInvalidProjectName, err.Error(), nil)
	}
	if err := secrets.CheckName(name); err != nil {
		return "", "", invalidSecret(err, "name")
	}
	return project, name, nil
}

// invalidSecret answers a name or value the rules refuse: 400, saying
// which rule (field is "name", "value", or "" when unknown).
func invalidSecret(err error, field string) *Error {
	var details any
	if field != "" {
		details = map[string]any{"field": field}
	}
	return newError(http.StatusBadRequest, CodeInvalidSecret, err.Error(), details)
}
