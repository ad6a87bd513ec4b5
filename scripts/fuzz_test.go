package scripts

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseManifest: any input gives a manifest or located errors, never a
// panic; what parses also goes through Load's validation.
func FuzzParseManifest(f *testing.F) {
	for _, seed := range []string{
		"project: p\noperations:\n  - name: A\n    script: operations/a.js\n",
		"project: p\noperations:\n  - name: A\n    type: acknowledge\n    action: jbxcommit\nlisteners:\n  - name: l\n    destination: /topic/t\n    operations: [A]\n    placement: {reservation: [a, b]}\n    redelivery: {maxRedeliveries: -1, initialDelay: 1s, multiplier: 2, maxDelay: 1m}\n",
		"project: p\noperations: &o\n  - onSuccess: *o\n",
		"a: [\n",
		"- 1\n- 2\n",
		"project: p\n---\nx: 1\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	addSamples(f, func(dir string) []byte {
		b, _ := os.ReadFile(filepath.Join(dir, ManifestFile))
		return b
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			if m != nil {
				t.Fatal("a manifest returned with an error")
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T is not a *ValidationError: %v", err, err)
			}
			return
		}
		_, _ = Load(m.Project, 1, project(string(data)), LoadOptions{})
	})
}

// FuzzReadBundle: any upload gives files or an error, never a panic, and
// every name it returns is clean and relative.
func FuzzReadBundle(f *testing.F) {
	f.Add(tgz(f, entry{Name: "opsrunner.yaml", Body: "project: p\n"}, entry{Name: "operations/a.js", Body: okJS}))
	f.Add(tgz(f, entry{Name: "p/opsrunner.yaml", Body: "project: p\n"}))
	f.Add(tgz(f, entry{Name: "../x", Body: "1"}))
	f.Add(tgz(f, entry{Name: "l", Type: '2', Link: "/etc/passwd"}))
	f.Add([]byte("not gzip"))
	addSamples(f, func(dir string) []byte {
		b, _ := BundleDir(dir)
		return b
	})
	lim := Limits{MaxBundleBytes: 1 << 20, MaxFiles: 50, MaxFileBytes: 64 << 10, MaxTotalBytes: 256 << 10}
	f.Fuzz(func(t *testing.T, data []byte) {
		files, err := ReadBundle(bytes.NewReader(data), lim)
		if err != nil {
			if files != nil {
				t.Fatal("files returned with an error")
			}
			return
		}
		for name := range files {
			if c, err := cleanBundlePath(name); err != nil || c != name || name == "" {
				t.Fatalf("unclean name %q", name)
			}
		}
		_, _ = Load("p", 1, files, LoadOptions{})
	})
}

// addSamples seeds a fuzz target with the repository's sample projects.
func addSamples(f *testing.F, read func(dir string) []byte) {
	dirs, _ := filepath.Glob(filepath.Join("..", "samples", "*"))
	for _, d := range dirs {
		if b := read(d); len(b) > 0 {
			f.Add(b)
		}
	}
}
