package broker

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3/frame"
	"golang.org/x/crypto/bcrypt"
)

// logBuffer is a goroutine-safe buffer for a broker's log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// login connects as login/passcode and returns the connection and whether
// the broker answered CONNECTED (else it refused with access refused).
func login(t *testing.T, b *Broker, login, passcode string) (*rawConn, bool) {
	t.Helper()
	r := dialRaw(t, b)
	r.write("CONNECT\naccept-version:1.2\nhost:x\nlogin:" + login + "\npasscode:" + passcode + "\n\n\x00")
	f := r.read()
	switch {
	case f != nil && f.Command == frame.CONNECTED:
		return r, true
	case f != nil && f.Command == frame.ERROR && f.Header.Get(frame.Message) == "access refused":
		return r, false
	}
	t.Fatalf("CONNECT as %s: want CONNECTED or ERROR access refused, got %v", login, f)
	return nil, false
}

// eventually waits, for at most 10 s, until cond holds: the users file is
// looked at every second.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
	}
}

// TestUsersFileIsReloaded: a users file is read again when it changes.
// New CONNECTs use the new users; a connection made before keeps its
// session and its permissions; a broken version is logged and leaves the
// users as they were.
func TestUsersFileIsReloaded(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "users.yaml")
	write := func(text string) {
		t.Helper()
		// through a rename, as a deployment tool writes it
		tmp := path + ".tmp"
		must(t, os.WriteFile(tmp, []byte(text), 0o600))
		must(t, os.Rename(tmp, path))
	}
	write("- {login: alice, passcode: a-pass, read: ['/queue/reload.*'], write: ['/queue/reload.*']}\n")
	var logs logBuffer
	b := startBroker(t, Config{UsersFile: path, Logger: slog.New(slog.NewTextHandler(&logs, nil))})

	alice, ok := login(t, b, "alice", "a-pass")
	if !ok {
		t.Fatal("alice refused before the change")
	}
	if _, ok := login(t, b, "bob", "b-pass"); ok {
		t.Fatal("bob accepted before he is in the file")
	}

	write("- {login: bob, passcode: '" + mustHash(t, "b-pass") + "', write: ['/queue/reload.*']}\n")
	eventually(t, "bob may connect after the change", func() bool {
		_, ok := login(t, b, "bob", "b-pass")
		return ok
	})
	if _, ok := login(t, b, "alice", "a-pass"); ok {
		t.Error("alice still accepted after she left the file")
	}
	// alice's session goes on with what she was granted.
	alice.write("SUBSCRIBE\nid:1\ndestination:/queue/reload.in\nreceipt:r\n\n\x00")
	if f := alice.read(); f == nil || f.Command != frame.RECEIPT {
		t.Fatalf("alice's connection after the change: want RECEIPT, got %v", f)
	}

	write("- {login: carol, passcode: c-pass, read: [''],\n") // malformed
	eventually(t, "the broken file logged", func() bool { return strings.Contains(logs.String(), "does not load") })
	if _, ok := login(t, b, "bob", "b-pass"); !ok {
		t.Error("bob refused after a broken users file: the users read before were not kept")
	}
	if _, ok := login(t, b, "carol", "c-pass"); ok {
		t.Error("carol accepted from a broken users file")
	}
}

// A users file that is missing, malformed or names nobody is refused at
// start; with a users file the broker is never open.
func TestUsersFileAtStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, text := range map[string]string{
		"malformed.yaml": "- login: a\n  passcode: [\n",
		"empty.yaml":     "",
		"nobody.yaml":    "[]\n",
		"bad-user.yaml":  "- {login: a, passcode: ''}\n",
	} {
		path := filepath.Join(dir, name)
		must(t, os.WriteFile(path, []byte(text), 0o600))
		if _, err := New(Config{UsersFile: path}); err == nil || !strings.Contains(err.Error(), "users file") {
			t.Errorf("%s: New = %v, want a users file error", name, err)
		}
	}
	if _, err := New(Config{UsersFile: filepath.Join(dir, "missing.yaml")}); err == nil {
		t.Error("a missing users file was accepted")
	}
	path := filepath.Join(dir, "ok.yaml")
	must(t, os.WriteFile(path, []byte("- {login: a, passcode: p}\n"), 0o600))
	b, err := New(Config{UsersFile: path})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.auth.open() {
		t.Error("a broker with a users file is open")
	}
}

// TestAdminUser: admin: true allows reading and writing every
// destination; the same user without it only what its patterns name.
func TestAdminUser(t *testing.T) {
	t.Parallel()
	users, err := ParseUsers([]byte("- {login: root, passcode: r, admin: true}\n- {login: app, passcode: a, read: ['/queue/app.*']}\n"))
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, Config{Users: users})
	for _, tc := range []struct {
		login, passcode, frame string
		allowed                bool
	}{
		{"root", "r", "SUBSCRIBE\nid:1\ndestination:/queue/orders.DLQ\nreceipt:r\n\n\x00", true},
		{"root", "r", "SEND\ndestination:/topic/anything\nreceipt:r\n\nx\x00", true},
		{"app", "a", "SUBSCRIBE\nid:1\ndestination:/queue/app.in\nreceipt:r\n\n\x00", true},
		{"app", "a", "SUBSCRIBE\nid:1\ndestination:/queue/orders.DLQ\nreceipt:r\n\n\x00", false},
		{"app", "a", "SEND\ndestination:/queue/app.in\nreceipt:r\n\nx\x00", false},
	} {
		r, ok := login(t, b, tc.login, tc.passcode)
		if !ok {
			t.Fatalf("%s refused", tc.login)
		}
		r.write(tc.frame)
		if tc.allowed {
			if f := r.read(); f == nil || f.Command != frame.RECEIPT {
				t.Errorf("%s: %q: want RECEIPT, got %v", tc.login, strings.SplitN(tc.frame, "\n", 2)[0], f)
			}
			continue
		}
		r.expectError("access denied")
	}
}

// TestUnknownLoginCostsABcryptCheck: with bcrypt users, an unknown login
// is checked against a decoy hash, so that it costs what a wrong passcode
// costs: each makes exactly one bcrypt comparison. Counted, not timed.
func TestUnknownLoginCostsABcryptCheck(t *testing.T) {
	t.Parallel()
	a, err := newAuthenticator([]User{{Login: "app", Passcode: mustHash(t, "right")}}, false)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	calls := 0
	compare := a.compare
	a.compare = func(hash, passcode []byte) error {
		mu.Lock()
		calls++
		mu.Unlock()
		return compare(hash, passcode)
	}
	count := func(login, passcode string) (int, error) {
		mu.Lock()
		calls = 0
		mu.Unlock()
		_, err := a.authenticate(login, passcode)
		mu.Lock()
		defer mu.Unlock()
		return calls, err
	}
	for _, tc := range []struct {
		name, login, passcode string
	}{
		{"wrong passcode", "app", "wrong"},
		{"unknown login", "nobody", "wrong"},
		{"no login", "", ""},
	} {
		n, err := count(tc.login, tc.passcode)
		if err != errAccessRefused {
			t.Errorf("%s: %v, want access refused", tc.name, err)
		}
		if n != 1 {
			t.Errorf("%s: %d bcrypt comparisons, want 1", tc.name, n)
		}
	}
	if n, err := count("app", "right"); err != nil || n != 1 {
		t.Errorf("right passcode: %d comparisons, %v; want 1, nil", n, err)
	}
	if n, err := count("app", "right"); err != nil || n != 0 {
		t.Errorf("right passcode again: %d comparisons, %v; want 0 (remembered), nil", n, err)
	}
	// The decoy has the users' cost, so that its check takes as long.
	decoy := a.table.Load().decoy
	if !decoy.bcrypt {
		t.Fatal("the decoy of bcrypt users is no bcrypt hash")
	}
	if got, _ := bcrypt.Cost(decoy.passcode); got != 4 {
		t.Errorf("decoy cost %d, want 4 (mustHash's)", got)
	}
}

// FuzzParseUsers: a users file never panics the parser, and whatever it
// accepts makes a working set of users.
func FuzzParseUsers(f *testing.F) {
	for _, s := range []string{
		"- {login: app, passcode: s3cret, read: ['/queue/orders.*'], write: ['/queue/orders.in']}\n",
		"- {login: root, passcode: r, admin: true}\n- {login: app, passcode: a}\n",
		"- login: a\n  passcode: $2a$04$WSPpcy5SsPxmf5KrLySvA.MxyA8mLfvi1ZhznJrX8yNKC1mrIdJrq\n",
		"- login: a\n  passcode: $2a$31$WSPpcy5SsPxmf5KrLySvA.MxyA8mLfvi1ZhznJrX8yNKC1mrIdJrq\n",
		"[]\n", "", "- login: a\n", "login: a", "- {login: a, passcode: p, read: ['']}\n",
		"- &a {login: a, passcode: p}\n- *a\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		users, err := ParseUsers(data)
		if err != nil {
			return
		}
		if _, err := newAuthenticator(users, true); err != nil {
			t.Fatalf("ParseUsers accepted users the broker refuses: %v", err)
		}
	})
}

func TestBcryptCostIsBounded(t *testing.T) {
	t.Parallel()
	// cost 31: a check (and the decoy hash) would take days
	err := CheckUsers([]User{{Login: "a", Passcode: "$2a$31$WSPpcy5SsPxmf5KrLySvA.MxyA8mLfvi1ZhznJrX8yNKC1mrIdJrq"}})
	if err == nil || !strings.Contains(err.Error(), "bcrypt cost 31 is above 16") {
		t.Fatalf("CheckUsers = %v, want the cost refused", err)
	}
}
