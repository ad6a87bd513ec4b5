package scripts

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ManifestFile is the manifest's path at the root of a bundle.
const ManifestFile = "opsrunner.yaml"

// maxTrailing bounds the padding read after the tar archive's end.
const maxTrailing = 1 << 20

// bundleFile names the upload itself in errors that concern no entry.
const bundleFile = "bundle"

// Limits bounds what ReadBundle accepts. The zero value of each field means
// its default.
type Limits struct {
	MaxBundleBytes int64 // compressed upload, 0 → 10 MiB
	MaxFiles       int   // 0 → 1000
	MaxFileBytes   int64 // one file uncompressed, 0 → 5 MiB
	MaxTotalBytes  int64 // all files uncompressed, 0 → 50 MiB
}

func (l Limits) withDefaults() Limits {
	if l.MaxBundleBytes <= 0 {
		l.MaxBundleBytes = 10 << 20
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = 1000
	}
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = 5 << 20
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = 50 << 20
	}
	return l
}

// sourceReader counts compressed bytes, stops at the limit and remembers an
// error of the underlying reader, so it is not mistaken for a corrupt bundle.
type sourceReader struct {
	r     io.Reader
	left  int64
	over  bool
	ioErr error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	if s.over {
		return 0, errors.New("bundle too large")
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.r.Read(p)
	s.left -= int64(n)
	if err != nil && err != io.EOF {
		s.ioErr = err
	}
	if s.left <= 0 {
		s.over = true
		return n, errors.New("bundle too large")
	}
	return n, err
}

// ReadBundle reads a gzipped tar into a map of files by clean slash path
// relative to the bundle root. A bundle whose files all sit in one top-level
// folder holding opsrunner.yaml is unwrapped, so `tar czf x.tgz myproj/` and
// `tar czf x.tgz -C myproj .` read the same. Directories and pax global
// headers are skipped; absolute paths, "..", symlinks, hard links, devices and
// duplicate entries are refused, as is anything over lim.
//
// Problems with the upload are *ValidationError (File is the entry's name as
// written, or "bundle"; a non-gzip or corrupt upload says "not a gzipped
// tar"); an error of r itself is returned wrapped. It does not require a
// manifest: Load does. Safe for concurrent use.
func ReadBundle(r io.Reader, lim Limits) (map[string][]byte, error) {
	lim = lim.withDefaults()
	src := &sourceReader{r: r, left: lim.MaxBundleBytes + 1}
	corrupt := func(err error) error {
		if src.ioErr != nil {
			return fmt.Errorf("reading bundle: %w", src.ioErr)
		}
		if src.over {
			return &ValidationError{File: bundleFile, Message: fmt.Sprintf("bundle is larger than %d bytes compressed", lim.MaxBundleBytes)}
		}
		return &ValidationError{File: bundleFile, Message: fmt.Sprintf("not a gzipped tar: %v", err)}
	}
	zr, err := gzip.NewReader(src)
	if err != nil {
		return nil, corrupt(err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	var total int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			// Read the rest of the stream so gzip verifies its checksum;
			// a little padding is normal, a stream of it is not.
			n, err := io.Copy(io.Discard, io.LimitReader(zr, maxTrailing+1))
			if err != nil {
				return nil, corrupt(err)
			}
			if n > maxTrailing {
				return nil, &ValidationError{File: bundleFile, Message: "unexpected data after the end of the tar archive"}
			}
			break
		}
		if err != nil {
			return nil, corrupt(err)
		}
		bad := func(format string, args ...any) error {
			return &ValidationError{File: hdr.Name, Message: fmt.Sprintf(format, args...)}
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA, tar.TypeDir:
		case tar.TypeXGlobalHeader:
			continue
		case tar.TypeSymlink:
			return nil, bad("symbolic links are not allowed in a bundle (link to %q)", hdr.Linkname)
		case tar.TypeLink:
			return nil, bad("hard links are not allowed in a bundle (link to %q)", hdr.Linkname)
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			return nil, bad("device and fifo entries are not allowed in a bundle")
		default:
			return nil, bad("unsupported tar entry type %q", hdr.Typeflag)
		}
		name, err := cleanBundlePath(hdr.Name)
		if err != nil {
			return nil, bad("%s", err.Error())
		}
		if hdr.Typeflag == tar.TypeDir || name == "" {
			continue
		}
		if _, dup := files[name]; dup {
			return nil, bad("duplicate entry %q", name)
		}
		if len(files) >= lim.MaxFiles {
			return nil, bad("bundle has more than %d files", lim.MaxFiles)
		}
		if hdr.Size > lim.MaxFileBytes {
			return nil, bad("file is %d bytes, more than the limit of %d", hdr.Size, lim.MaxFileBytes)
		}
		if total+hdr.Size > lim.MaxTotalBytes {
			return nil, bad("bundle holds more than %d bytes uncompressed", lim.MaxTotalBytes)
		}
		data, err := io.ReadAll(io.LimitReader(tr, lim.MaxFileBytes+1))
		if err != nil {
			return nil, corrupt(err)
		}
		if int64(len(data)) > lim.MaxFileBytes {
			return nil, bad("file is more than the limit of %d bytes", lim.MaxFileBytes)
		}
		total += int64(len(data))
		files[name] = data
	}
	return unwrapRoot(files), nil
}

// cleanBundlePath returns name as a clean relative slash path, "" for the
// root itself, or an error for absolute paths and "..".
func cleanBundlePath(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty entry name")
	}
	if strings.ContainsAny(name, "\x00\\") {
		return "", errors.New("entry name contains a backslash or NUL")
	}
	if strings.HasPrefix(name, "/") || (len(name) >= 2 && name[1] == ':' && ('a' <= name[0]|0x20 && name[0]|0x20 <= 'z')) {
		return "", errors.New("absolute paths are not allowed in a bundle")
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == ".." {
			return "", errors.New("path traversal (\"..\") is not allowed in a bundle")
		}
	}
	c := path.Clean(name)
	if c == "." {
		return "", nil
	}
	return c, nil
}

// unwrapRoot strips a single top-level folder that holds the manifest.
func unwrapRoot(files map[string][]byte) map[string][]byte {
	if _, ok := files[ManifestFile]; ok || len(files) == 0 {
		return files
	}
	var root string
	for name := range files {
		i := strings.IndexByte(name, '/')
		if i < 0 {
			return files
		}
		if root == "" {
			root = name[:i]
		} else if name[:i] != root {
			return files
		}
	}
	if _, ok := files[root+"/"+ManifestFile]; !ok {
		return files
	}
	out := make(map[string][]byte, len(files))
	for name, data := range files {
		out[strings.TrimPrefix(name, root+"/")] = data
	}
	return out
}

// WriteBundle writes files as a gzipped tar in name order with fixed
// metadata, so equal inputs give equal bytes. Names must be relative slash
// paths without "..". It blocks until everything is written to w.
func WriteBundle(w io.Writer, files map[string][]byte) error {
	names := make([]string, 0, len(files))
	for name := range files {
		c, err := cleanBundlePath(name)
		if err != nil || c != name {
			return fmt.Errorf("writing bundle: bad file name %q", name)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	epoch := time.Unix(0, 0).UTC()
	for _, name := range names {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     name,
			Mode:     0o644,
			Size:     int64(len(files[name])),
			ModTime:  epoch,
			Format:   tar.FormatPAX,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("writing bundle entry %s: %w", name, err)
		}
		if _, err := tw.Write(files[name]); err != nil {
			return fmt.Errorf("writing bundle entry %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("writing bundle: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("writing bundle: %w", err)
	}
	return nil
}

// BundleDir reads the project folder dir into a gzipped tar (WriteBundle),
// skipping dotfiles and dot-directories (.git, .DS_Store). Symlinks to files
// are followed; symlinks to directories and other special files are errors.
// dir must hold opsrunner.yaml. It reads the whole folder into memory.
func BundleDir(dir string) ([]byte, error) {
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); err != nil {
		return nil, fmt.Errorf("bundling %s: no %s in the folder: %w", dir, ManifestFile, err)
	}
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			if !fi.Mode().IsRegular() {
				return fmt.Errorf("%s: only regular files can be bundled", rel)
			}
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = data
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bundling %s: %w", dir, err)
	}
	var buf bytes.Buffer
	if err := WriteBundle(&buf, files); err != nil {
		return nil, fmt.Errorf("bundling %s: %w", dir, err)
	}
	return buf.Bytes(), nil
}
