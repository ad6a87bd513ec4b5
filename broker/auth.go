package broker

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"
)

// User is one login of the broker and what it may do. Read and Write are
// destination patterns (see Pattern): Read allows SUBSCRIBE, Write allows
// SEND. A user with neither may connect and do nothing else.
type User struct {
	Login string `yaml:"login"`
	// Passcode is the passcode in plain text, or its bcrypt hash ("$2a$…",
	// "$2b$…", "$2y$…").
	Passcode string   `yaml:"passcode"`
	Read     []string `yaml:"read"`
	Write    []string `yaml:"write"`
}

// Permission names what a user asks to do with a destination.
type Permission string

// Permissions checked on SUBSCRIBE (read) and SEND (write).
const (
	Read  Permission = "read"
	Write Permission = "write"
)

// CheckUsers reports every problem of users: an empty or repeated login,
// an empty passcode, a passcode starting with "$2" that is no bcrypt hash,
// a bad pattern. It does not hash anything.
func CheckUsers(users []User) error {
	var errs []error
	seen := map[string]bool{}
	for i, u := range users {
		switch {
		case u.Login == "":
			errs = append(errs, fmt.Errorf("user %d: login is empty", i+1))
			continue
		case seen[u.Login]:
			errs = append(errs, fmt.Errorf("user %q: login repeated", u.Login))
		}
		seen[u.Login] = true
		if err := checkPasscode(u.Passcode); err != nil {
			errs = append(errs, fmt.Errorf("user %q: %w", u.Login, err))
		}
		for _, list := range []struct {
			p    Permission
			pats []string
		}{{Read, u.Read}, {Write, u.Write}} {
			for _, p := range list.pats {
				if _, err := CompilePattern(p); err != nil {
					errs = append(errs, fmt.Errorf("user %q: %s: %w", u.Login, list.p, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func checkPasscode(p string) error {
	if p == "" {
		return errors.New("passcode is empty")
	}
	if isBcrypt(p) {
		if _, err := bcrypt.Cost([]byte(p)); err != nil {
			return fmt.Errorf("passcode starts with $2 but is no bcrypt hash: %w", err)
		}
	}
	return nil
}

func isBcrypt(p string) bool { return strings.HasPrefix(p, "$2") }

// ParseUsers reads a users file: a YAML list of users with the keys login,
// passcode, read and write (the agent's broker_users). The users are
// checked as by CheckUsers; unknown keys are errors.
func ParseUsers(data []byte) ([]User, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var users []User
	if err := dec.Decode(&users); err != nil {
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, errors.New("no users")
		}
		return nil, fmt.Errorf("parse users: %w", err)
	}
	if err := CheckUsers(users); err != nil {
		return nil, err
	}
	return users, nil
}

// grant is what one authenticated connection may do; nil grants everything
// (a broker without users).
type grant struct {
	login       string
	read, write []Pattern
}

// allows reports whether g permits p on dest.
func (g *grant) allows(p Permission, dest string) bool {
	if g == nil {
		return true
	}
	pats := g.read
	if p == Write {
		pats = g.write
	}
	for _, pat := range pats {
		if pat.Match(dest) {
			return true
		}
	}
	return false
}

// authUser is a User with its patterns compiled.
type authUser struct {
	passcode []byte
	bcrypt   bool
	grant    *grant
}

// authenticator checks CONNECT credentials. bcrypt checks are slow (tens
// of milliseconds), so a successful one is remembered by a digest of the
// login and passcode; only successes are kept, so the cache holds at most
// one entry per user and bcrypt hash. Goroutine-safe.
type authenticator struct {
	users map[string]*authUser // nil: no users, anyone may connect

	mu     sync.Mutex
	passed map[[sha256.Size]byte]struct{}
}

func newAuthenticator(users []User) (*authenticator, error) {
	if err := CheckUsers(users); err != nil {
		return nil, err
	}
	a := &authenticator{passed: map[[sha256.Size]byte]struct{}{}}
	if len(users) == 0 {
		return a, nil
	}
	a.users = make(map[string]*authUser, len(users))
	for _, u := range users {
		g := &grant{login: u.Login}
		for _, p := range u.Read {
			pat, _ := CompilePattern(p) // checked above
			g.read = append(g.read, pat)
		}
		for _, p := range u.Write {
			pat, _ := CompilePattern(p)
			g.write = append(g.write, pat)
		}
		a.users[u.Login] = &authUser{passcode: []byte(u.Passcode), bcrypt: isBcrypt(u.Passcode), grant: g}
	}
	return a, nil
}

// open reports whether the broker accepts any login.
func (a *authenticator) open() bool { return a.users == nil }

// errAccessRefused is the answer to a wrong login or passcode; it says no
// more, so that logins cannot be probed.
var errAccessRefused = errors.New("access refused")

// authenticate returns what login may do, or errAccessRefused. It blocks
// for a bcrypt check the first time a user's passcode is seen.
func (a *authenticator) authenticate(login, passcode string) (*grant, error) {
	if a.open() {
		return nil, nil
	}
	u := a.users[login]
	if u == nil {
		return nil, errAccessRefused
	}
	if !u.bcrypt {
		if subtle.ConstantTimeCompare(u.passcode, []byte(passcode)) != 1 {
			return nil, errAccessRefused
		}
		return u.grant, nil
	}
	key := sha256.Sum256([]byte(login + "\x00" + passcode))
	a.mu.Lock()
	_, ok := a.passed[key]
	a.mu.Unlock()
	if ok {
		return u.grant, nil
	}
	if bcrypt.CompareHashAndPassword(u.passcode, []byte(passcode)) != nil {
		return nil, errAccessRefused
	}
	a.mu.Lock()
	a.passed[key] = struct{}{}
	a.mu.Unlock()
	return u.grant, nil
}

// Pattern is a compiled destination pattern: the text matches itself, and
// each '*' matches any run of characters, '/' and '.' included
// ("/queue/orders.*", "/topic/*", "*"). The zero value matches only "".
type Pattern struct {
	parts []string // the text between stars
	star  bool     // the pattern has at least one '*'
}

// maxPatternBytes bounds a pattern's length.
const maxPatternBytes = 1024

// CompilePattern checks and compiles a destination pattern: non-empty,
// valid UTF-8, without control characters, at most 1024 bytes.
func CompilePattern(s string) (Pattern, error) {
	switch {
	case s == "":
		return Pattern{}, errors.New("empty destination pattern")
	case len(s) > maxPatternBytes:
		return Pattern{}, fmt.Errorf("destination pattern longer than %d bytes", maxPatternBytes)
	case !utf8.ValidString(s):
		return Pattern{}, fmt.Errorf("destination pattern %q is not UTF-8", s)
	case strings.IndexFunc(s, isControl) >= 0:
		return Pattern{}, fmt.Errorf("destination pattern %q has a control character", s)
	}
	return Pattern{parts: strings.Split(s, "*"), star: strings.Contains(s, "*")}, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// Match reports whether dest matches p. It runs in time linear in
// len(dest) times the number of stars, without backtracking: each part
// between stars is taken at its first occurrence, which is always safe
// because a star absorbs whatever lies between.
func (p Pattern) Match(dest string) bool {
	if !p.star {
		return len(p.parts) == 1 && dest == p.parts[0] || len(p.parts) == 0 && dest == ""
	}
	first, last := p.parts[0], p.parts[len(p.parts)-1]
	if len(dest) < len(first)+len(last) || !strings.HasPrefix(dest, first) || !strings.HasSuffix(dest, last) {
		return false
	}
	mid := dest[len(first) : len(dest)-len(last)]
	for _, part := range p.parts[1 : len(p.parts)-1] {
		i := strings.Index(mid, part)
		if i < 0 {
			return false
		}
		mid = mid[i+len(part):]
	}
	return true
}
