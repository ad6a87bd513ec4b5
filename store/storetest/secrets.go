package storetest

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/store"
)

// testSecrets: a secret is stored as the exact bytes given (any bytes),
// with its update time; a put replaces; listing gives names and times in
// name order, never nil; unset secrets are ErrNotFound to read and to
// delete.
func testSecrets(t *testing.T, s store.Store) {
	c := ctx(t)
	if _, _, err := s.Secret(c, "shop", "API_KEY"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unset secret: err = %v, want ErrNotFound", err)
	}
	if list, err := s.Secrets(c, "shop"); err != nil || list == nil || len(list) != 0 {
		t.Fatalf("Secrets of a project without any = %#v, %v; want an empty, non-nil list", list, err)
	}
	sealed := []byte{0, 1, 2, 0xff, 0xfe, 0, 'x'} // sealed values are arbitrary bytes
	t1 := base.Add(time.Minute).Add(123456789 * time.Nanosecond)
	for _, name := range []string{"TOKEN", "API_KEY", "_b"} {
		if err := s.PutSecret(c, "shop", name, append(bytes.Clone(sealed), name...), t1); err != nil {
			t.Fatalf("PutSecret(%s): %v", name, err)
		}
	}
	got, at, err := s.Secret(c, "shop", "API_KEY")
	if err != nil || !bytes.Equal(got, append(bytes.Clone(sealed), "API_KEY"...)) || !at.Equal(t1) {
		t.Fatalf("Secret(API_KEY) = %x, %v, %v; want %x, %v", got, at, err, append(bytes.Clone(sealed), "API_KEY"...), t1)
	}

	t2 := t1.Add(time.Hour)
	if err := s.PutSecret(c, "shop", "TOKEN", []byte("replaced"), t2); err != nil {
		t.Fatal(err)
	}
	if got, at, err := s.Secret(c, "shop", "TOKEN"); err != nil || string(got) != "replaced" || !at.Equal(t2) {
		t.Fatalf("Secret(TOKEN) after a second put = %q, %v, %v; want replaced, %v", got, at, err, t2)
	}
	wantList(t, s, "shop", []store.SecretInfo{{Name: "API_KEY", UpdatedAt: t1}, {Name: "TOKEN", UpdatedAt: t2}, {Name: "_b", UpdatedAt: t1}})

	if err := s.DeleteSecret(c, "shop", "API_KEY"); err != nil {
		t.Fatalf("DeleteSecret: %v", err)
	}
	if err := s.DeleteSecret(c, "shop", "API_KEY"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second DeleteSecret: err = %v, want ErrNotFound", err)
	}
	if _, _, err := s.Secret(c, "shop", "API_KEY"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted secret: err = %v, want ErrNotFound", err)
	}
	wantList(t, s, "shop", []store.SecretInfo{{Name: "TOKEN", UpdatedAt: t2}, {Name: "_b", UpdatedAt: t1}})
	for _, name := range []string{"TOKEN", "_b"} {
		if err := s.DeleteSecret(c, "shop", name); err != nil {
			t.Fatal(err)
		}
	}
	wantList(t, s, "shop", []store.SecretInfo{})
	if err := s.PutSecret(c, "shop", "AGAIN", []byte("v"), t1); err != nil {
		t.Fatalf("PutSecret after the project's last secret went: %v", err)
	}
	wantList(t, s, "shop", []store.SecretInfo{{Name: "AGAIN", UpdatedAt: t1}})
}

// testSecretsPerProject: projects do not see each other's secrets, even
// when one name prefixes another's.
func testSecretsPerProject(t *testing.T, s store.Store) {
	c := ctx(t)
	at := base
	for _, p := range []string{"a", "a.b", "ab"} {
		if err := s.PutSecret(c, p, "KEY", []byte("of "+p), at); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutSecret(c, "ab", "ONLY_AB", []byte("x"), at); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a", "a.b", "ab"} {
		if got, _, err := s.Secret(c, p, "KEY"); err != nil || string(got) != "of "+p {
			t.Fatalf("Secret(%s, KEY) = %q, %v; want %q", p, got, err, "of "+p)
		}
	}
	if _, _, err := s.Secret(c, "a", "ONLY_AB"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another project's secret: err = %v, want ErrNotFound", err)
	}
	wantList(t, s, "a", []store.SecretInfo{{Name: "KEY", UpdatedAt: at}})
	if err := s.DeleteSecret(c, "a", "ONLY_AB"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete of another project's secret: err = %v, want ErrNotFound", err)
	}
	if err := s.DeleteSecret(c, "a", "KEY"); err != nil {
		t.Fatal(err)
	}
	if got, _, err := s.Secret(c, "a.b", "KEY"); err != nil || string(got) != "of a.b" {
		t.Fatalf("Secret(a.b, KEY) after a's went = %q, %v", got, err)
	}
	if _, _, err := s.Secret(c, "", "KEY"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Secret of project \"\": err = %v, want ErrNotFound", err)
	}
}

func wantList(t *testing.T, s store.Store, project string, want []store.SecretInfo) {
	t.Helper()
	got, err := s.Secrets(ctx(t), project)
	if err != nil {
		t.Fatalf("Secrets(%s): %v", project, err)
	}
	same := slices.EqualFunc(got, want, func(a, b store.SecretInfo) bool { return a.Name == b.Name && a.UpdatedAt.Equal(b.UpdatedAt) })
	if !same || got == nil {
		t.Fatalf("Secrets(%s) = %#v, want %v", project, got, want)
	}
}
