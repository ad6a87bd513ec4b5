// Package console serves the web console: a page, plain ES modules and a
// style sheet embedded in the binary, that drives the management API
// (/api/v1) from the browser. It holds no state and calls nothing itself;
// the api package mounts Handler at / and /console/.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed assets
var assets embed.FS

// prefix is where the console's pages live; its assets are under
// prefix + "assets/".
const prefix = "/console/"

// policy is the Content-Security-Policy of every answer: only the
// console's own files and calls to its own origin; no inline script or
// style, no other host, no framing.
const policy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// setSecurityHeaders sets the headers every answer carries.
func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", policy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

// contentType is the type of a file the console uses, by extension;
// declared here rather than read from the system's MIME tables, which vary.
func contentType(ext string) string {
	switch ext {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".png":
		return "image/png"
	case ".txt":
		return "text/plain; charset=utf-8"
	}
	return "application/octet-stream"
}

// file is one embedded asset, read once.
type file struct {
	data        []byte
	contentType string
	etag        string
}

// handler serves the embedded files.
type handler struct {
	files map[string]file // by path under assets/, e.g. "app.js"
	index file
}

// Handler returns the console's handler. GET / and any /console/ path that
// is not an asset answer the page (the page routes itself from the URL);
// /console/assets/{name} answers that file or 404. Other methods are 405.
// Files are revalidated by ETag on each load (Cache-Control: no-cache), so
// a new binary's console is seen at once. The handler is goroutine-safe.
func Handler() http.Handler {
	h := &handler{files: map[string]file{}}
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		h.files[strings.TrimPrefix(p, "assets/")] = file{data: data, contentType: contentType(path.Ext(p)), etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		// The files are compiled in: this is a build defect, shown plainly.
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "console: read embedded assets: "+err.Error(), http.StatusInternalServerError)
		})
	}
	h.index = h.files["index.html"]
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w.Header())
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	f, ok := h.lookup(r.URL.Path)
	if !ok {
		http.Error(w, "no console file "+r.URL.Path, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", f.contentType)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", f.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.data))
}

// lookup finds the file a path answers: an asset under /console/assets/,
// else the page for / and every other /console/ path.
func (h *handler) lookup(p string) (file, bool) {
	if name, ok := strings.CutPrefix(p, prefix+"assets/"); ok {
		f, ok := h.files[name]
		return f, ok && name != "index.html"
	}
	if p == "/" || p == "/console" || strings.HasPrefix(p, prefix) {
		return h.index, true
	}
	return file{}, false
}
