package scripts

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// entry is one tar entry for test bundles; Type 0 means a regular file.
type entry struct {
	Name string
	Type byte
	Body string
	Link string
	Size int64 // header size override when > 0
}

func tgz(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		typ := e.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.Name, Typeflag: typ, Mode: 0o644, Linkname: e.Link}
		if typ == tar.TypeXGlobalHeader {
			hdr = &tar.Header{Name: e.Name, Typeflag: typ, PAXRecords: map[string]string{"comment": "git"}}
		}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.Body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.Body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t testing.TB, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(raw)
	zw.Close()
	return buf.Bytes()
}

func TestReadBundle(t *testing.T) {
	t.Parallel()
	manifest := entry{Name: "opsrunner.yaml", Body: "project: p\n"}
	script := entry{Name: "operations/a.js", Body: "function handle(){}"}
	want := map[string][]byte{"opsrunner.yaml": []byte("project: p\n"), "operations/a.js": []byte("function handle(){}")}
	tests := []struct {
		name string
		data []byte
		lim  Limits
		want map[string][]byte
	}{
		{name: "plain", data: tgz(t, manifest, script), want: want},
		{name: "dot root (tar -C dir .)", data: tgz(t, entry{Name: "./", Type: tar.TypeDir},
			entry{Name: "./opsrunner.yaml", Body: "project: p\n"}, entry{Name: "./operations/", Type: tar.TypeDir},
			entry{Name: "./operations/a.js", Body: "function handle(){}"}), want: want},
		{name: "single top folder (tar czf x.tgz myproj/)", data: tgz(t, entry{Name: "myproj/", Type: tar.TypeDir},
			entry{Name: "myproj/opsrunner.yaml", Body: "project: p\n"},
			entry{Name: "myproj/operations/a.js", Body: "function handle(){}"}), want: want},
		{name: "top folder without manifest is kept", data: tgz(t, entry{Name: "x/a.js", Body: "1"}),
			want: map[string][]byte{"x/a.js": []byte("1")}},
		{name: "pax global header skipped", data: tgz(t, entry{Name: "pax_global_header", Type: tar.TypeXGlobalHeader}, manifest, script), want: want},
		{name: "redundant slashes cleaned", data: tgz(t, manifest, entry{Name: "operations//a.js", Body: "function handle(){}"}), want: want},
		{name: "empty tar", data: tgz(t), want: map[string][]byte{}},
		{name: "exactly at the compressed limit", data: tgz(t, manifest, script), lim: Limits{MaxBundleBytes: int64(len(tgz(t, manifest, script)))}, want: want},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ReadBundle(bytes.NewReader(tt.data), tt.lim)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestReadBundleRefuses is the bundle half of the bad-input corpus: each
// malformed or hostile upload gets its own error.
func TestReadBundleRefuses(t *testing.T) {
	t.Parallel()
	manifest := entry{Name: "opsrunner.yaml", Body: "project: p\n"}
	valid := tgz(t, manifest)
	tests := []struct {
		name     string
		data     []byte
		lim      Limits
		wantFile string // ValidationError.File
		wantMsg  string
	}{
		{name: "not gzip", data: []byte("PK\x03\x04 this is a zip"), wantFile: "bundle", wantMsg: "not a gzipped tar"},
		{name: "empty upload", data: nil, wantFile: "bundle", wantMsg: "not a gzipped tar"},
		{name: "gzip of garbage (malformed tar)", data: gz(t, bytes.Repeat([]byte("garbage!"), 100)), wantFile: "bundle", wantMsg: "not a gzipped tar"},
		{name: "truncated tar", data: gz(t, rawTar(t)[:700]), wantFile: "bundle", wantMsg: "not a gzipped tar"},
		{name: "truncated gzip", data: valid[:len(valid)-10], wantFile: "bundle", wantMsg: "not a gzipped tar"},
		{name: "path traversal", data: tgz(t, manifest, entry{Name: "../x.js", Body: "1"}), wantFile: "../x.js", wantMsg: "path traversal"},
		{name: "nested traversal", data: tgz(t, manifest, entry{Name: "operations/../../x.js", Body: "1"}), wantFile: "operations/../../x.js", wantMsg: "path traversal"},
		{name: "traversal in a directory entry", data: tgz(t, entry{Name: "a/../../", Type: tar.TypeDir}), wantFile: "a/../../", wantMsg: "path traversal"},
		{name: "absolute path", data: tgz(t, manifest, entry{Name: "/etc/passwd", Body: "1"}), wantFile: "/etc/passwd", wantMsg: "absolute path"},
		{name: "windows absolute path", data: tgz(t, entry{Name: "C:/x.js", Body: "1"}), wantFile: "C:/x.js", wantMsg: "absolute path"},
		{name: "backslash", data: tgz(t, entry{Name: `..\x.js`, Body: "1"}), wantFile: `..\x.js`, wantMsg: "backslash"},
		{name: "symlink", data: tgz(t, manifest, entry{Name: "operations/a.js", Type: tar.TypeSymlink, Link: "/etc/passwd"}), wantFile: "operations/a.js", wantMsg: "symbolic links are not allowed"},
		{name: "hard link", data: tgz(t, manifest, entry{Name: "b.js", Type: tar.TypeLink, Link: "opsrunner.yaml"}), wantFile: "b.js", wantMsg: "hard links are not allowed"},
		{name: "device", data: tgz(t, entry{Name: "dev", Type: tar.TypeChar}), wantFile: "dev", wantMsg: "device"},
		{name: "fifo", data: tgz(t, entry{Name: "fifo", Type: tar.TypeFifo}), wantFile: "fifo", wantMsg: "fifo"},
		{name: "duplicate entry", data: tgz(t, manifest, manifest), wantFile: "opsrunner.yaml", wantMsg: "duplicate entry"},
		{name: "too many files", data: tgz(t, manifest, entry{Name: "a", Body: "1"}, entry{Name: "b", Body: "2"}),
			lim: Limits{MaxFiles: 2}, wantFile: "b", wantMsg: "more than 2 files"},
		{name: "oversized file", data: tgz(t, manifest, entry{Name: "big.js", Body: strings.Repeat("x", 101)}),
			lim: Limits{MaxFileBytes: 100}, wantFile: "big.js", wantMsg: "more than the limit of 100"},
		{name: "too much in total", data: tgz(t, entry{Name: "a", Body: strings.Repeat("x", 60)}, entry{Name: "b", Body: strings.Repeat("x", 60)}),
			lim: Limits{MaxTotalBytes: 100}, wantFile: "b", wantMsg: "more than 100 bytes uncompressed"},
		{name: "compressed upload too large", data: valid, lim: Limits{MaxBundleBytes: int64(len(valid) - 1)}, wantFile: "bundle", wantMsg: "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			files, err := ReadBundle(bytes.NewReader(tt.data), tt.lim)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, %v; want a *ValidationError", files, err)
			}
			if ve.File != tt.wantFile || !strings.Contains(ve.Message, tt.wantMsg) {
				t.Fatalf("got %q (file %q), want file %q and a message containing %q", err, ve.File, tt.wantFile, tt.wantMsg)
			}
		})
	}
}

func rawTar(t *testing.T) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "opsrunner.yaml", Mode: 0o644, Size: 2000})
	tw.Write(bytes.Repeat([]byte("#"), 2000))
	tw.Close()
	return buf.Bytes()
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

func TestReadBundleReaderErrorIsNotValidation(t *testing.T) {
	t.Parallel()
	boom := errors.New("connection reset")
	_, err := ReadBundle(io.MultiReader(bytes.NewReader(tgz(t)[:5]), failingReader{boom}), Limits{})
	var ve *ValidationError
	if !errors.Is(err, boom) || errors.As(err, &ve) {
		t.Fatalf("got %v; want the reader's error, not a validation error", err)
	}
}

func TestWriteBundleRoundTripAndDeterminism(t *testing.T) {
	t.Parallel()
	files := map[string][]byte{"opsrunner.yaml": []byte("project: p\n"), "operations/b.js": []byte("b"), "operations/a.js": []byte("a"), "empty": {}}
	var one, two bytes.Buffer
	if err := WriteBundle(&one, files); err != nil {
		t.Fatal(err)
	}
	if err := WriteBundle(&two, files); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one.Bytes(), two.Bytes()) {
		t.Fatal("two writes of the same files differ")
	}
	got, err := ReadBundle(&one, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, files) {
		t.Fatalf("round trip: got %q, want %q", got, files)
	}
	for _, bad := range []string{"../x", "/abs", "a/./b", ""} {
		if err := WriteBundle(io.Discard, map[string][]byte{bad: nil}); err == nil {
			t.Errorf("WriteBundle accepted the name %q", bad)
		}
	}
}

func TestBundleDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("opsrunner.yaml", "project: p\n")
	write("operations/a.js", "a")
	write(".git/config", "secret")
	write(".env", "TOKEN=1")
	write("operations/.DS_Store", "junk")
	if err := os.Symlink(filepath.Join(dir, "operations", "a.js"), filepath.Join(dir, "operations", "link.js")); err != nil {
		t.Fatal(err)
	}
	data, err := BundleDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadBundle(bytes.NewReader(data), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{"opsrunner.yaml": []byte("project: p\n"), "operations/a.js": []byte("a"), "operations/link.js": []byte("a")}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}

	if _, err := BundleDir(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no opsrunner.yaml") {
		t.Fatalf("a folder without a manifest: got %v", err)
	}
}
