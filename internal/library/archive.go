package library

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// ReadArchive reads the item in a tar archive, gzipped or not (what `tar
// czf`, `git archive` or a download gives): its regular files, at most
// MaxFiles and MaxBytes in all, read no further than that. One directory
// that holds every entry is the item's root. A link, a device, or a path
// out of the archive is refused by name, as Read refuses them.
func ReadArchive(file string) (map[string][]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		defer gz.Close()
		r = gz
	}
	tr := tar.NewReader(r)
	files := map[string][]byte{}
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: not a tar archive of an item: %w", file, err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		switch h.Typeflag {
		case tar.TypeDir, tar.TypeXGlobalHeader:
			continue
		case tar.TypeReg:
		default:
			return nil, &Invalid{[]Finding{{Rule: "item.link", Path: name, Message: "not a regular file (a link, a device…): an item holds plain files only"}}}
		}
		if !cleanPath(name) {
			return nil, &Invalid{[]Finding{{Rule: "item.path", Path: name, Message: "not a plain relative path inside the item"}}}
		}
		if len(files) >= MaxFiles {
			return nil, &Invalid{[]Finding{{Rule: "item.files", Message: fmt.Sprintf("more than %d files", MaxFiles)}}}
		}
		b, err := io.ReadAll(io.LimitReader(tr, MaxBytes-total+1))
		if err != nil {
			return nil, err
		}
		if total += int64(len(b)); total > MaxBytes {
			return nil, &Invalid{[]Finding{{Rule: "item.size", Message: fmt.Sprintf("more than %d bytes", MaxBytes)}}}
		}
		files[name] = b
	}
	return stripRoot(files), nil
}

// stripRoot removes the one directory every path is in, if there is one
// and the manifest is not at the top already.
func stripRoot(files map[string][]byte) map[string][]byte {
	if _, ok := files[ManifestFile]; ok || len(files) == 0 {
		return files
	}
	root := ""
	for p := range files {
		dir, _, ok := strings.Cut(p, "/")
		if !ok || (root != "" && dir != root) {
			return files
		}
		root = dir
	}
	out := make(map[string][]byte, len(files))
	for p, b := range files {
		out[path.Clean(strings.TrimPrefix(p, root+"/"))] = b
	}
	return out
}
