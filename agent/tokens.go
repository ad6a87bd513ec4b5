package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/opsrunner/opsrunner/api"
)

// Token is one entry of the configuration's tokens: a bearer token of the
// API and its scopes ("admin", "deploy:<project glob>", "run:<glob>",
// "read:<glob>"). In YAML a plain string is an admin token; a mapping
// gives the token one of three ways (token, token_sha256 or token_file)
// and its scopes:
//
//	tokens:
//	  - "an-admin-token"
//	  - {token: "ci-token", scopes: ["deploy:shop", "read:shop"]}
//	  - {token_sha256: "<hex of the token's SHA-256>", scopes: ["read:*"]}
//	  - {token_file: /run/secrets/ops-token, scopes: ["run:team-*"]}
type Token struct {
	// Token is the token itself.
	Token string `yaml:"token"`
	// TokenSHA256 is the hex SHA-256 of the token, so that the
	// configuration need not hold it.
	TokenSHA256 string `yaml:"token_sha256"`
	// TokenFile is a file holding the token (surrounding white space
	// ignored), read when the agent starts.
	TokenFile string `yaml:"token_file"`
	// Scopes are what the token may do; a token needs at least one.
	Scopes []string `yaml:"scopes"`
}

// AdminToken returns the admin token value: what a plain string in tokens,
// or an entry of OPSRUNNER_TOKENS, means.
func AdminToken(value string) Token {
	return Token{Token: value, Scopes: []string{string(api.ScopeAdmin)}}
}

func adminTokens(values []string) []Token {
	out := make([]Token, len(values))
	for i, v := range values {
		out[i] = AdminToken(v)
	}
	return out
}

// tokenKeys are the keys of a token's mapping form.
var tokenKeys = []string{"token", "token_sha256", "token_file", "scopes"}

// UnmarshalYAML reads a token: a string (an admin token) or a mapping of
// tokenKeys.
func (t *Token) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		var v string
		if err := n.Decode(&v); err != nil {
			return err
		}
		*t = AdminToken(v)
		return nil
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; !slices.Contains(tokenKeys, k.Value) {
				return fmt.Errorf("line %d: a token has no key %q (keys: %s)", k.Line, k.Value, strings.Join(tokenKeys, ", "))
			}
		}
		type plain Token // without this method
		return n.Decode((*plain)(t))
	}
	return fmt.Errorf("line %d: a token is a string (an admin token) or a mapping {token | token_sha256 | token_file, scopes}", n.Line)
}

// apiToken returns t as the API checks it: its value's digest and its
// parsed scopes. It reads TokenFile. Errors never show the token.
func (t Token) apiToken() (api.Token, error) {
	var out api.Token
	given := 0
	for _, v := range []string{t.Token, t.TokenSHA256, t.TokenFile} {
		if v != "" {
			given++
		}
	}
	if given != 1 {
		return out, errors.New("give exactly one of token, token_sha256 and token_file")
	}
	switch {
	case t.Token != "":
		out.SHA256 = sha256.Sum256([]byte(t.Token))
	case t.TokenSHA256 != "":
		sum, err := hex.DecodeString(t.TokenSHA256)
		if err != nil || len(sum) != sha256.Size {
			return out, errors.New("token_sha256 must be 64 hex digits (the SHA-256 of the token)")
		}
		copy(out.SHA256[:], sum)
	default:
		data, err := os.ReadFile(t.TokenFile)
		if err != nil {
			return out, fmt.Errorf("token_file: %w", err)
		}
		v := strings.TrimSpace(string(data))
		if v == "" {
			return out, fmt.Errorf("token_file %s is empty", t.TokenFile)
		}
		out.SHA256 = sha256.Sum256([]byte(v))
	}
	if len(t.Scopes) == 0 {
		return out, errors.New(`scopes is empty: give at least one ("admin", "deploy:<project glob>", "run:<glob>", "read:<glob>")`)
	}
	for _, s := range t.Scopes {
		sc, err := api.ParseScope(s)
		if err != nil {
			return out, err
		}
		out.Scopes = append(out.Scopes, sc)
	}
	return out, nil
}

// apiTokens returns the configured tokens as the API checks them; an
// error names each bad entry by its index.
func (c *Config) apiTokens() ([]api.Token, error) {
	var out []api.Token
	var errs []error
	for i, t := range c.Tokens {
		at, err := t.apiToken()
		if err != nil {
			errs = append(errs, fmt.Errorf("tokens[%d]: %w", i, err))
			continue
		}
		out = append(out, at)
	}
	return out, errors.Join(errs...)
}

// validateServing checks the HTTP server's settings: tokens and TLS files.
func (c *Config) validateServing() []error {
	var errs []error
	if _, err := c.apiTokens(); err != nil {
		errs = append(errs, err)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls_cert_file and tls_key_file go together: set both or neither"))
	}
	return errs
}
