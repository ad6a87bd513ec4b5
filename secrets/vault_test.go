package secrets_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/opsrunner/opsrunner/internal/testenv"
	"github.com/opsrunner/opsrunner/secrets"
	"github.com/opsrunner/opsrunner/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func randomKey() []byte {
	k := make([]byte, secrets.KeySize)
	rand.Read(k)
	return k
}

func openBolt(t *testing.T, path string) *store.Bolt {
	t.Helper()
	st, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newVault(t *testing.T, key []byte, st secrets.Storage) *secrets.Vault {
	t.Helper()
	v, err := secrets.NewVault(key, st)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Set then Get gives the value back; List shows names, never values; a
// second Set replaces; Delete makes it unset, and a second Delete is
// ErrNotFound.
func TestVaultRoundTrip(t *testing.T) {
	t.Parallel()
	v := newVault(t, randomKey(), openBolt(t, filepath.Join(t.TempDir(), "opsrunner.db")))
	c := t.Context()
	if _, ok, err := v.Get(c, "shop", "API_KEY"); ok || err != nil {
		t.Fatalf("unset: ok = %v, err = %v", ok, err)
	}
	binary := string([]byte{0, 0xff, '\n', 'x'})
	for name, value := range map[string]string{"API_KEY": "k-123", "TOKEN": binary} {
		if err := v.Set(c, "shop", name, []byte(value)); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := v.Get(c, "shop", name); err != nil || !ok || got != value {
			t.Fatalf("Get(%s) = %q, %v, %v; want %q", name, got, ok, err, value)
		}
	}
	if err := v.Set(c, "shop", "API_KEY", []byte("k-456")); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := v.Get(c, "shop", "API_KEY"); got != "k-456" {
		t.Fatalf("after a second Set: %q", got)
	}
	list, err := v.List(c, "shop")
	if err != nil || len(list) != 2 || list[0].Name != "API_KEY" || list[1].Name != "TOKEN" || list[0].UpdatedAt.IsZero() {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if err := v.Delete(c, "shop", "API_KEY"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := v.Get(c, "shop", "API_KEY"); ok || err != nil {
		t.Fatalf("deleted: ok = %v, err = %v", ok, err)
	}
	if err := v.Delete(c, "shop", "API_KEY"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second Delete: %v, want ErrNotFound", err)
	}
	if list, err := v.List(c, "empty"); err != nil || list == nil || len(list) != 0 {
		t.Fatalf("List of a project without secrets = %#v, %v; want []", list, err)
	}
}

// Names, values and project names the rules refuse are errors wrapping
// ErrInvalid that say which rule; Get of such a name is simply unset.
func TestVaultRules(t *testing.T) {
	t.Parallel()
	v := newVault(t, randomKey(), openBolt(t, filepath.Join(t.TempDir(), "opsrunner.db")))
	ok128 := "A" + strings.Repeat("b", 127)
	for _, tc := range []struct {
		project, name string
		value         []byte
		want          string // in the error; "" for none
	}{
		{"shop", "API_KEY", []byte("v"), ""},
		{"shop", "_x9", []byte("v"), ""},
		{"shop", ok128, []byte("v"), ""},
		{"shop", "MAX", bytes.Repeat([]byte("v"), 64<<10), ""},
		{"shop", "", []byte("v"), "secret name is empty"},
		{"shop", "9LIVES", []byte("v"), "starts with a digit"},
		{"shop", "API-KEY", []byte("v"), `holds '-' at byte 3`},
		{"shop", "CLÉ", []byte("v"), `holds 'É' at byte 2`},
		{"shop", ok128 + "c", []byte("v"), "is 129 characters long"},
		{"shop", "EMPTY", nil, "secret value is empty"},
		{"shop", "BIG", bytes.Repeat([]byte("v"), 64<<10+1), "secret value is 65537 bytes; a value is at most 64 KiB"},
		{"Shop", "API_KEY", []byte("v"), `project name "Shop" holds 'S'`},
		{".shop", "API_KEY", []byte("v"), `starts with "."`},
		{"", "API_KEY", []byte("v"), "project name \"\" is empty"},
	} {
		err := v.Set(t.Context(), tc.project, tc.name, tc.value)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Set(%q, %.20q): %v", tc.project, tc.name, err)
		case tc.want != "" && (!errors.Is(err, secrets.ErrInvalid) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Set(%q, %.20q, %d bytes): err = %v; want ErrInvalid saying %q", tc.project, tc.name, len(tc.value), err, tc.want)
		}
		if tc.want != "" && tc.value != nil && len(tc.value) <= 64<<10 {
			if _, ok, err := v.Get(t.Context(), tc.project, tc.name); ok || err != nil {
				t.Errorf("Get(%q, %q) = %v, %v; want unset", tc.project, tc.name, ok, err)
			}
		}
	}
}

// A value sealed under another key fails with an error that says so and
// what to do; a value moved to another name (in the store, under the same
// key) fails as damaged. Neither error holds the value.
func TestVaultWrongKeyAndMovedValue(t *testing.T) {
	t.Parallel()
	st := openBolt(t, filepath.Join(t.TempDir(), "opsrunner.db"))
	first, other := newVault(t, randomKey(), st), newVault(t, randomKey(), st)
	c := t.Context()
	if err := first.Set(c, "shop", "API_KEY", []byte("the-value")); err != nil {
		t.Fatal(err)
	}
	_, ok, err := other.Get(c, "shop", "API_KEY")
	want := "secret API_KEY of project shop cannot be opened with this agent's key: every agent of a cluster needs the same secrets_key"
	if ok || !errors.Is(err, secrets.ErrWrongKey) || err.Error() != want {
		t.Fatalf("Get under another key: ok = %v, err = %v; want %q", ok, err, want)
	}

	sealed, at, err := st.Secret(c, "shop", "API_KEY")
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range []struct{ project, name string }{{"shop", "OTHER"}, {"shop2", "API_KEY"}} {
		if err := st.PutSecret(c, to.project, to.name, sealed, at); err != nil {
			t.Fatal(err)
		}
		_, ok, err := first.Get(c, to.project, to.name)
		if ok || !errors.Is(err, secrets.ErrDamaged) || strings.Contains(err.Error(), "the-value") {
			t.Fatalf("value moved to %s/%s: ok = %v, err = %v; want ErrDamaged", to.project, to.name, ok, err)
		}
	}
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	if err := st.PutSecret(c, "shop", "API_KEY", flipped, at); err != nil {
		t.Fatal(err)
	}
	if _, _, err := first.Get(c, "shop", "API_KEY"); !errors.Is(err, secrets.ErrDamaged) {
		t.Fatalf("a changed byte: err = %v, want ErrDamaged", err)
	}
}

// Two seals of one value differ (a random nonce each), and neither holds
// the value.
func TestVaultSealsFreshEachTime(t *testing.T) {
	t.Parallel()
	st := openBolt(t, filepath.Join(t.TempDir(), "opsrunner.db"))
	v := newVault(t, randomKey(), st)
	var seen [][]byte
	for range 2 {
		if err := v.Set(t.Context(), "shop", "API_KEY", []byte("same-value-each-time")); err != nil {
			t.Fatal(err)
		}
		sealed, _, err := st.Secret(t.Context(), "shop", "API_KEY")
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(sealed, []byte("same-value")) {
			t.Fatalf("sealed bytes hold the value: %q", sealed)
		}
		seen = append(seen, sealed)
	}
	if bytes.Equal(seen[0], seen[1]) {
		t.Fatal("two seals of one value are equal: the nonce was reused")
	}
}

// The bbolt file holds no value in plain text (the names are there: the
// search itself works).
func TestVaultBoltFileHoldsNoPlainValue(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "opsrunner.db")
	st, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v := newVault(t, randomKey(), st)
	values := map[string]string{"API_KEY": "plain-api-key-4711", "PASSWORD": "hunter2-hunter2"}
	for name, value := range values {
		if err := v.Set(t.Context(), "shop", name, []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, value := range values {
		if !bytes.Contains(file, []byte(name)) {
			t.Fatalf("the file does not hold the name %s: the search is broken", name)
		}
		if bytes.Contains(file, []byte(value)) {
			t.Errorf("the bbolt file holds the value of %s in plain text", name)
		}
	}
}

var prefixes atomic.Int64

// openRedis opens a Redis store on its own client ("an agent") under
// prefix.
func openRedis(t *testing.T, addr, prefix string) *store.Redis {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { client.Close() })
	st, err := store.OpenRedis(client, prefix, store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// In a cluster every agent, given the same key, reads what another set,
// at once: a second store and vault on the same Redis see each change.
// Redis holds no value in plain text.
func TestVaultAcrossRedisAgents(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t)
	prefix := fmt.Sprintf("secretstest%d:", prefixes.Add(1))
	key := randomKey()
	a := newVault(t, key, openRedis(t, srv.Addr, prefix))
	b := newVault(t, key, openRedis(t, srv.Addr, prefix))
	c := t.Context()

	if err := a.Set(c, "shop", "API_KEY", []byte("redis-plain-value-1")); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := b.Get(c, "shop", "API_KEY"); err != nil || !ok || got != "redis-plain-value-1" {
		t.Fatalf("second agent reads %q, %v, %v", got, ok, err)
	}
	if err := b.Set(c, "shop", "API_KEY", []byte("redis-plain-value-2")); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := a.Get(c, "shop", "API_KEY"); got != "redis-plain-value-2" {
		t.Fatalf("first agent reads %q after the second changed it", got)
	}
	if list, err := b.List(c, "shop"); err != nil || len(list) != 1 || list[0].Name != "API_KEY" {
		t.Fatalf("second agent lists %+v, %v", list, err)
	}

	raw := redisBytes(t, srv.Addr, prefix)
	if !bytes.Contains(raw, []byte("API_KEY")) {
		t.Fatalf("Redis does not hold the name under %s: the search is broken", prefix)
	}
	if bytes.Contains(raw, []byte("redis-plain-value")) {
		t.Fatal("Redis holds a secret value in plain text")
	}

	if err := a.Delete(c, "shop", "API_KEY"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := b.Get(c, "shop", "API_KEY"); ok || err != nil {
		t.Fatalf("second agent after the delete: ok = %v, err = %v", ok, err)
	}

	// An agent given another key fails clearly.
	other := newVault(t, randomKey(), openRedis(t, srv.Addr, prefix))
	if err := a.Set(c, "shop", "TOKEN", []byte("t")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := other.Get(c, "shop", "TOKEN"); !errors.Is(err, secrets.ErrWrongKey) {
		t.Fatalf("agent with another key: err = %v, want ErrWrongKey", err)
	}
}

// redisBytes returns every key name and value (all hash fields included)
// under prefix, concatenated.
func redisBytes(t *testing.T, addr, prefix string) []byte {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	c := t.Context()
	keys, err := client.Keys(c, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, k := range keys {
		out.WriteString(k)
		switch typ := client.Type(c, k).Val(); typ {
		case "hash":
			for f, v := range client.HGetAll(c, k).Val() {
				out.WriteString(f)
				out.WriteString(v)
			}
		case "string":
			out.WriteString(client.Get(c, k).Val())
		default:
			t.Fatalf("key %s of type %s: not searched", k, typ)
		}
	}
	return out.Bytes()
}
