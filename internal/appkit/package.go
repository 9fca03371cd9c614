package appkit

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/taosagent/taosagent/internal/atomicfile"
)

// Package validates the app in dir and writes it to out as a .taosapp; an
// empty out means DefaultOutput in the current directory. It refuses,
// returning the report, if validation finds an error. The
// archive is deterministic: the same files give the same bytes, whatever
// their times, owners or modes on disk, and on whichever machine. It
// returns the report, whose SHA256 is the archive's.
func Package(ctx context.Context, dir, out string, opt Options) (*Report, error) {
	rep, b, err := validate(ctx, dir, opt)
	if err != nil {
		return nil, err
	}
	if !rep.OK {
		return rep, fmt.Errorf("package %s: validation failed", dir)
	}
	if out == "" {
		out = DefaultOutput(".", rep.Manifest)
	}
	data, err := b.zip()
	if err != nil {
		return nil, fmt.Errorf("package %s: %w", dir, err)
	}
	if err := atomicfile.Write(out, data, 0o644); err != nil {
		return nil, err
	}
	rep.Source, rep.SHA256 = out, sum(data)
	return rep, nil
}

// zip writes the bundle as a deterministic archive: sorted paths, one fixed
// time (1980-01-01, the zip epoch), mode 0644, deflate, no extra fields.
func (b *bundle) zip() ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, name := range b.names {
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		h.ModifiedDate = 1<<5 | 1 // 1980-01-01 in MS-DOS format
		h.SetMode(fs.FileMode(0o644))
		w, err := zw.CreateHeader(h)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(b.files[name]); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DefaultOutput is where `app package` writes: ID-VERSION.taosapp in dir.
func DefaultOutput(dir string, m *Manifest) string {
	return filepath.Join(dir, m.ID+"-"+m.Version+".taosapp")
}
