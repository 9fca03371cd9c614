package appkit

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"strings"
	"testing"
)

// FuzzArchive: any bytes as a package. Validation never panics, never
// unpacks more than the limits allow, and a passing package has only clean
// relative paths and a manifest.
func FuzzArchive(f *testing.F) {
	dir := f.TempDir() + "/app"
	if _, err := New(dir, "Fuzz"); err != nil {
		f.Fatal(err)
	}
	b, _ := loadDir(dir, DefaultLimits(), func(Finding) {})
	good, _ := b.zip()
	f.Add(good)
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))
	f.Add([]byte{})
	lim := Limits{MaxFiles: 50, MaxFile: 1 << 20, MaxTotal: 2 << 20, MaxArchive: 4 << 20, MaxRatio: 100}
	f.Fuzz(func(t *testing.T, data []byte) {
		rep := ValidateBytes(context.Background(), "fuzz", data, Options{NoResolve: true, Limits: lim})
		zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		if !rep.OK {
			return
		}
		if rep.Manifest == nil {
			t.Fatal("passed without a manifest")
		}
		if err != nil && err != zip.ErrInsecurePath {
			t.Fatalf("passed an archive the zip reader rejects: %v", err)
		}
		for _, zf := range zr.File {
			if rule, _ := checkName(zf.Name); rule != "" {
				t.Fatalf("passed an archive holding %q", zf.Name)
			}
		}
	})
}

// FuzzManifest: any bytes as manifest.json. Parsing never panics, and a
// manifest that passes survives a round trip through encoding/json.
func FuzzManifest(f *testing.F) {
	f.Add([]byte(`{"id":"local.notes","name":"Notes","version":"1.0.0","type":"web","entry":"index.html","icon":"icon.svg"}`))
	f.Add([]byte(`{"id":"a","id":"b"}`))
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m := parseManifest(data, func(Finding) {})
		if m == nil {
			return
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var findings []Finding
		if parseManifest(again, func(f Finding) { findings = append(findings, f) }) == nil {
			t.Fatalf("accepted %s but not its round trip %s: %v", data, again, findings)
		}
	})
}

// BenchmarkValidate10MB validates a 10 MB package: a scaffold plus 9 MB of
// incompressible assets and 1 MB of scripts.
func BenchmarkValidate10MB(b *testing.B) {
	dir := b.TempDir() + "/app"
	if _, err := New(dir, "Bench"); err != nil {
		b.Fatal(err)
	}
	bun, _ := loadDir(dir, DefaultLimits(), func(Finding) {})
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 9; i++ {
		img := make([]byte, 1<<20)
		rng.Read(img)
		bun.add("assets/img"+string(rune('0'+i))+".png", img)
	}
	var js strings.Builder
	for js.Len() < 1<<20 {
		fmt.Fprintf(&js, "export function f%x(a, b) { return document.querySelector('#x%x' + a).textContent = String(b * %d); }\n", rng.Uint64(), rng.Uint32(), rng.Int31())
	}
	bun.add("lib.js", []byte(js.String()))
	data, err := bun.zip()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep := ValidateBytes(context.Background(), "bench", data, Options{NoResolve: true})
		if !rep.OK {
			b.Fatal(rep.Text())
		}
	}
	b.ReportMetric(float64(len(data))/(1<<20), "MiB/package")
}
