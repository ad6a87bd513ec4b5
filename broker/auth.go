package broker

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"
)

// User is one login of the broker and what it may do. Read and Write are
// destination patterns (see Pattern): Read allows SUBSCRIBE, Write allows
// SEND. A user with neither, and not Admin, may connect and do nothing
// else.
type User struct {
	Login string `yaml:"login"`
	// Passcode is the passcode in plain text, or its bcrypt hash ("$2a$…",
	// "$2b$…", "$2y$…").
	Passcode string `yaml:"passcode"`
	// Admin allows everything: read and write on every destination,
	// whatever Read and Write say. The broker has no other operation to
	// allow: destinations come into being when first used, by anyone who
	// may read or write them.
	Admin bool     `yaml:"admin"`
	Read  []string `yaml:"read"`
	Write []string `yaml:"write"`
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

// maxBcryptCost bounds the cost of bcrypt passcodes: each step doubles
// the time a check takes, and at 16 one already takes seconds. A higher
// cost would make every login (and the decoy hash made for unknown logins
// at start) take minutes or more.
const maxBcryptCost = 16

func checkPasscode(p string) error {
	if p == "" {
		return errors.New("passcode is empty")
	}
	if isBcrypt(p) {
		cost, err := bcrypt.Cost([]byte(p))
		if err != nil {
			return fmt.Errorf("passcode starts with $2 but is no bcrypt hash: %w", err)
		}
		if cost > maxBcryptCost {
			return fmt.Errorf("bcrypt cost %d is above %d: each login would take minutes", cost, maxBcryptCost)
		}
	}
	return nil
}

func isBcrypt(p string) bool { return strings.HasPrefix(p, "$2") }

// ParseUsers reads a users file: a YAML list of users with the keys login,
// passcode, admin, read and write (the agent's broker_users). The users are
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
	all         bool // an admin: everything, whatever read and write say
	read, write []Pattern
}

// allows reports whether g permits p on dest.
func (g *grant) allows(p Permission, dest string) bool {
	if g == nil || g.all {
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

// newGrant compiles u's patterns; u has been checked (CheckUsers).
func newGrant(u User) *grant {
	g := &grant{login: u.Login, all: u.Admin}
	for _, p := range u.Read {
		pat, _ := CompilePattern(p)
		g.read = append(g.read, pat)
	}
	for _, p := range u.Write {
		pat, _ := CompilePattern(p)
		g.write = append(g.write, pat)
	}
	return g
}

// authUser is a User with its patterns compiled.
type authUser struct {
	passcode []byte
	bcrypt   bool
	grant    *grant
}

// authenticator checks CONNECT credentials against the users of the
// moment: the broker's own (Config.Users) and those of its users file,
// which setUsers replaces as a whole. Goroutine-safe.
type authenticator struct {
	static  []User                            // Config.Users, in every table
	isOpen  bool                              // no users at all, ever: anyone may connect
	compare func(hash, passcode []byte) error // bcrypt.CompareHashAndPassword; tests count its calls
	decoys  map[int][]byte                    // a bcrypt hash per cost, of a passcode nobody knows; guarded by setMu
	setMu   sync.Mutex                        // serializes setUsers
	table   atomic.Pointer[userTable]
}

// userTable is one set of users. bcrypt checks are slow (tens of
// milliseconds), so a successful one is remembered by a digest of the
// login and passcode; only successes are kept, so the cache holds at most
// one entry per user and bcrypt hash. A new table starts with an empty
// cache: a changed passcode is checked again.
type userTable struct {
	users map[string]*authUser // nil: no users, anyone may connect
	// decoy is checked for a login that is not in users, so that an
	// unknown login costs what a wrong passcode costs (a bcrypt check
	// when any user has a bcrypt passcode) and logins cannot be told
	// apart by the time the answer takes.
	decoy *authUser

	mu     sync.Mutex
	passed map[[sha256.Size]byte]struct{}
}

// newAuthenticator returns the authenticator of static users; withFile
// tells that a users file will add users (setUsers), so that the broker
// is not open even with no static users.
func newAuthenticator(static []User, withFile bool) (*authenticator, error) {
	a := &authenticator{
		static:  slices.Clone(static),
		isOpen:  len(static) == 0 && !withFile,
		compare: bcrypt.CompareHashAndPassword,
		decoys:  map[int][]byte{},
	}
	if err := a.setUsers(nil); err != nil {
		return nil, err
	}
	return a, nil
}

// setUsers makes the static users and more the users of the broker, for
// the CONNECTs that follow; connections already made keep what they were
// granted. On an error the users stay as they were.
func (a *authenticator) setUsers(more []User) error {
	all := append(slices.Clone(a.static), more...)
	if err := CheckUsers(all); err != nil {
		return err
	}
	t := &userTable{passed: map[[sha256.Size]byte]struct{}{}}
	if !a.isOpen {
		t.users = make(map[string]*authUser, len(all))
	}
	cost := 0
	for _, u := range all {
		au := &authUser{passcode: []byte(u.Passcode), bcrypt: isBcrypt(u.Passcode), grant: newGrant(u)}
		if au.bcrypt {
			c, _ := bcrypt.Cost(au.passcode) // checked above
			cost = max(cost, c)
		}
		t.users[u.Login] = au
	}
	a.setMu.Lock()
	defer a.setMu.Unlock()
	decoy, err := a.decoy(cost)
	if err != nil {
		return err
	}
	t.decoy = decoy
	a.table.Store(t)
	return nil
}

// decoy returns the user checked for unknown logins: with a bcrypt hash
// of the highest cost of the users' hashes (cost > 0), else a plain
// passcode; either of a random passcode nobody knows. a.setMu is held.
func (a *authenticator) decoy(cost int) (*authUser, error) {
	if cost == 0 {
		return &authUser{passcode: []byte(randomSecret())}, nil
	}
	h := a.decoys[cost]
	if h == nil {
		var err error
		if h, err = bcrypt.GenerateFromPassword([]byte(randomSecret()), cost); err != nil {
			return nil, fmt.Errorf("decoy passcode hash: %w", err)
		}
		a.decoys[cost] = h
	}
	return &authUser{passcode: h, bcrypt: true}, nil
}

func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail
	return hex.EncodeToString(b)
}

// open reports whether the broker accepts any login. It never changes.
func (a *authenticator) open() bool { return a.isOpen }

// errAccessRefused is the answer to a wrong login or passcode; it says no
// more, so that logins cannot be probed.
var errAccessRefused = errors.New("access refused")

// authenticate returns what login may do, or errAccessRefused. It blocks
// for a bcrypt check the first time a user's passcode is seen, and for
// every wrong one, of a known login or not.
func (a *authenticator) authenticate(login, passcode string) (*grant, error) {
	t := a.table.Load()
	if t.users == nil {
		return nil, nil
	}
	u := t.users[login]
	if u == nil {
		_ = a.check(t, t.decoy, login, passcode) // as long as a wrong passcode
		return nil, errAccessRefused
	}
	if !a.check(t, u, login, passcode) {
		return nil, errAccessRefused
	}
	return u.grant, nil
}

// check reports whether passcode is u's.
func (a *authenticator) check(t *userTable, u *authUser, login, passcode string) bool {
	if !u.bcrypt {
		return subtle.ConstantTimeCompare(u.passcode, []byte(passcode)) == 1
	}
	key := sha256.Sum256([]byte(login + "\x00" + passcode))
	t.mu.Lock()
	_, ok := t.passed[key]
	t.mu.Unlock()
	if ok {
		return true
	}
	if a.compare(u.passcode, []byte(passcode)) != nil {
		return false
	}
	t.mu.Lock()
	t.passed[key] = struct{}{}
	t.mu.Unlock()
	return true
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
