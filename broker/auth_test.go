package broker

import (
	"context"
	"net"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-stomp/stomp/v3/frame"
	"golang.org/x/crypto/bcrypt"
)

func TestPatternMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, dest string
		want          bool
	}{
		{"/queue/orders", "/queue/orders", true},
		{"/queue/orders", "/queue/orders.DLQ", false},
		{"/queue/orders.*", "/queue/orders.in", true},
		{"/queue/orders.*", "/queue/orders.", true},
		{"/queue/orders.*", "/queue/orders", false},
		{"/queue/orders.*", "/queue/billing.in", false},
		{"*", "/topic/anything/at/all", true},
		{"/topic/*", "/topic/a/b.c", true},
		{"/topic/*", "/queue/a", false},
		{"*.DLQ", "/queue/orders.DLQ", true},
		{"*.DLQ", "/queue/orders.DLQ.x", false},
		{"/queue/*.in.*", "/queue/a.in.b", true},
		{"/queue/*.in.*", "/queue/a.out.b", false},
		{"/queue/a*a*a", "/queue/aa", false},
		{"/queue/a*a*a", "/queue/aaa", true},
		{"a**b", "ab", true},
	}
	for _, tc := range tests {
		p, err := CompilePattern(tc.pattern)
		if err != nil {
			t.Fatalf("CompilePattern(%q): %v", tc.pattern, err)
		}
		if got := p.Match(tc.dest); got != tc.want {
			t.Errorf("%q matching %q = %v, want %v", tc.pattern, tc.dest, got, tc.want)
		}
	}
}

func TestCompilePatternRefuses(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "/queue/\xff", "/queue/a\nb", strings.Repeat("x", 1025)} {
		if _, err := CompilePattern(bad); err == nil {
			t.Errorf("CompilePattern(%q) accepted", bad)
		}
	}
}

// FuzzDestinationPattern checks the matcher against a regular expression
// built from the same pattern.
func FuzzDestinationPattern(f *testing.F) {
	for _, s := range [][2]string{
		{"/queue/orders.*", "/queue/orders.in"},
		{"*", ""},
		{"a*a*a", "aaaa"},
		{"*.DLQ", "/queue/x.DLQ"},
		{"/topic/*/prices", "/topic/eu/prices"},
		{"**", "x"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, dest string) {
		p, err := CompilePattern(pattern)
		if err != nil {
			return
		}
		parts := strings.Split(pattern, "*")
		for i := range parts {
			parts[i] = regexp.QuoteMeta(parts[i])
		}
		re := regexp.MustCompile(`\A(?s:` + strings.Join(parts, ".*") + `)\z`)
		got := p.Match(dest)
		// the regexp reads invalid UTF-8 as U+FFFD, so it is no reference
		// for such destinations (which the broker refuses anyway)
		if want := re.MatchString(dest); got != want && utf8.ValidString(dest) {
			t.Fatalf("%q matching %q = %v, the regexp says %v", pattern, dest, got, want)
		}
	})
}

func TestCheckUsers(t *testing.T) {
	t.Parallel()
	ok := User{Login: "a", Passcode: "p", Read: []string{"*"}}
	tests := []struct {
		name  string
		users []User
		want  string // "" = valid
	}{
		{"valid", []User{ok, {Login: "b", Passcode: mustHash(t, "x")}}, ""},
		{"empty login", []User{{Passcode: "p"}}, "login is empty"},
		{"repeated login", []User{ok, ok}, "repeated"},
		{"empty passcode", []User{{Login: "a"}}, "passcode is empty"},
		{"bad bcrypt", []User{{Login: "a", Passcode: "$2nothash"}}, "bcrypt"},
		{"bad pattern", []User{{Login: "a", Passcode: "p", Write: []string{""}}}, "write"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckUsers(tc.users)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("CheckUsers: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("CheckUsers = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestParseUsers(t *testing.T) {
	t.Parallel()
	users, err := ParseUsers([]byte("- login: app\n  passcode: secret\n  read: ['/queue/orders.*']\n  write: ['/queue/orders.in']\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 1 || users[0].Login != "app" || users[0].Read[0] != "/queue/orders.*" || users[0].Write[0] != "/queue/orders.in" {
		t.Fatalf("got %+v", users)
	}
	for _, bad := range []string{"", "- login: a\n  passcode: p\n  configure: [\"*\"]\n", "- login: a\n", "login: a"} {
		if _, err := ParseUsers([]byte(bad)); err == nil {
			t.Errorf("ParseUsers(%q) accepted", bad)
		}
	}
}

func mustHash(t testing.TB, passcode string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(passcode), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	b := startBroker(t, Config{Users: []User{
		{Login: "plain", Passcode: "s3cret", Read: []string{"*"}, Write: []string{"*"}},
		{Login: "hashed", Passcode: mustHash(t, "h4shed"), Read: []string{"*"}},
	}})
	tests := []struct {
		name, login, passcode string
		ok                    bool
	}{
		{"plain passcode", "plain", "s3cret", true},
		{"hashed passcode", "hashed", "h4shed", true},
		{"hashed passcode again (cached)", "hashed", "h4shed", true},
		{"wrong plain passcode", "plain", "s3cre", false},
		{"wrong hashed passcode", "hashed", "s3cret", false},
		{"the hash as passcode", "hashed", b.cfg.Users[1].Passcode, false},
		{"unknown login", "nobody", "s3cret", false},
		{"no login", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, b)
			r.write("CONNECT\naccept-version:1.2\nhost:x\nlogin:" + tc.login + "\npasscode:" + tc.passcode + "\n\n\x00")
			f := r.read()
			if tc.ok {
				if f == nil || f.Command != frame.CONNECTED {
					t.Fatalf("want CONNECTED, got %v", f)
				}
				return
			}
			if f == nil || f.Command != frame.ERROR || f.Header.Get(frame.Message) != "access refused" {
				t.Fatalf("want ERROR access refused, got %v", f)
			}
			if f := r.read(); f != nil {
				t.Errorf("connection still open after ERROR: %v", f.Command)
			}
		})
	}
	if n := len(b.auth.table.Load().passed); n != 1 {
		t.Errorf("%d bcrypt checks remembered, want 1 (the right passcode of hashed)", n)
	}
}

func TestPermissions(t *testing.T) {
	t.Parallel()
	b := startBroker(t, Config{Users: []User{{
		Login: "orders", Passcode: "p",
		Read:  []string{"/queue/orders.in", "/topic/prices.*"},
		Write: []string{"/queue/orders.*"},
	}}})
	const hello = "CONNECT\naccept-version:1.2\nhost:x\nlogin:orders\npasscode:p\n\n\x00"
	tests := []struct {
		name, frame string
		want        string // "" = RECEIPT, else the ERROR's message mentions it
	}{
		{"SUBSCRIBE allowed", "SUBSCRIBE\nid:1\ndestination:/queue/orders.in\nreceipt:r\n\n\x00", ""},
		{"SUBSCRIBE to a topic allowed", "SUBSCRIBE\nid:1\ndestination:/topic/prices.eu\nreceipt:r\n\n\x00", ""},
		{"SUBSCRIBE to the DLQ denied", "SUBSCRIBE\nid:1\ndestination:/queue/orders.in.DLQ\nreceipt:r\n\n\x00", "no read permission on /queue/orders.in.DLQ"},
		{"SUBSCRIBE elsewhere denied", "SUBSCRIBE\nid:1\ndestination:/queue/billing\nreceipt:r\n\n\x00", "no read permission on /queue/billing"},
		{"SEND allowed", "SEND\ndestination:/queue/orders.out\nreceipt:r\n\nx\x00", ""},
		{"SEND elsewhere denied", "SEND\ndestination:/topic/prices.eu\nreceipt:r\n\nx\x00", "no write permission on /topic/prices.eu"},
		{"SEND in a transaction denied at once", "BEGIN\ntransaction:t\n\n\x00SEND\ndestination:/queue/billing\ntransaction:t\nreceipt:r\n\nx\x00", "no write permission on /queue/billing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := dialRaw(t, b)
			r.write(hello + tc.frame)
			if f := r.read(); f == nil || f.Command != frame.CONNECTED {
				t.Fatalf("want CONNECTED, got %v", f)
			}
			f := r.read()
			if tc.want == "" {
				if f == nil || f.Command != frame.RECEIPT {
					t.Fatalf("want RECEIPT, got %v", f)
				}
				return
			}
			if f == nil || f.Command != frame.ERROR {
				t.Fatalf("want ERROR, got %v", f)
			}
			if msg := f.Header.Get(frame.Message); !strings.Contains(msg, tc.want) {
				t.Errorf("message %q does not mention %q", msg, tc.want)
			}
			if f.Header.Get(frame.ReceiptId) != "r" {
				t.Errorf("ERROR names receipt %q, want r", f.Header.Get(frame.ReceiptId))
			}
			if f := r.read(); f != nil {
				t.Errorf("connection still open after ERROR: %v", f.Command)
			}
		})
	}
}

func TestOpenBrokerOnlyOnLoopback(t *testing.T) {
	t.Parallel()
	serve := func(cfg Config) error {
		b, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		ln, err := net.Listen("tcp", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- b.Serve(ctx, ln) }()
		cancel()
		return <-done
	}
	if err := serve(Config{}); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("open broker on 0.0.0.0: Serve = %v, want a refusal naming loopback", err)
	}
	if err := serve(Config{Users: []User{{Login: "a", Passcode: "p"}}}); err != nil {
		t.Errorf("broker with users on 0.0.0.0: Serve = %v", err)
	}
	for addr, want := range map[string]bool{
		"127.0.0.1:61613": true, "[::1]:61613": true, "localhost:61613": true,
		"0.0.0.0:61613": false, ":61613": false, "[::]:61613": false, "example.com:61613": false, "10.0.0.1:61613": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
