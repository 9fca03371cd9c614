package opencode

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tarball is an npm package tarball holding files (path → content).
func tarball(t *testing.T, files map[string]string, symlink string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	if symlink != "" {
		tw.WriteHeader(&tar.Header{Name: "package/bin/opencode", Typeflag: tar.TypeSymlink, Linkname: symlink})
	}
	for name, body := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg})
		io.WriteString(tw, body)
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

// fakeNPM puts an `npm` on PATH whose `pack` writes tgz into the pack
// destination and reports it with the given integrity, as npm does.
func fakeNPM(t *testing.T, tgz []byte, reported string) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "pkg.tgz")
	os.WriteFile(src, tgz, 0o644)
	script := fmt.Sprintf(`#!/bin/sh
# npm pack --json --pack-destination DIR --loglevel=error PKG@VERSION
cp %q "$4/opencode-linux-x64-x.tgz"
echo '[{"filename":"opencode-linux-x64-x.tgz","integrity":"%s"}]'
`, src, reported)
	os.WriteFile(filepath.Join(dir, "npm"), []byte(script), 0o755)
	t.Setenv("PATH", dir+":/usr/bin:/bin")
}

// A registry (or mirror) that serves other bytes for the pinned version,
// with a matching integrity of its own, is refused before anything is
// unpacked: the pin in the source decides, not the registry's claim.
func TestInstallRefusesAPackageThatIsNotThePinnedOne(t *testing.T) {
	if _, ok := PinOf(Version); !ok {
		t.Skip("no pin for this platform")
	}
	tgz := tarball(t, map[string]string{"package/bin/opencode": "#!/bin/sh\necho " + Version + "\n"}, "")
	dir := t.TempDir()
	fakeNPM(t, tgz, mustIntegrity(t, tgz))
	_, err := Install(t.Context(), dir, io.Discard)
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "other bytes than were pinned") {
		t.Fatalf("install of a substituted package: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a refused install left %v behind", ents)
	}
}

// Another version (an operator's explicit choice, not pinned here) is
// checked against the integrity the registry publishes, unpacked (its
// binary only), recorded, and verified byte for byte from then on.
func TestInstallOfAnotherVersionIsRecordedAndVerified(t *testing.T) {
	const v = "0.0.0-test"
	tgz := tarball(t, map[string]string{"package/bin/opencode": "#!/bin/sh\necho " + v + "\n", "package/package.json": "{}"}, "")
	dir := t.TempDir()
	fakeNPM(t, tgz, "sha512-not-what-it-is")
	if _, err := InstallVersion(t.Context(), dir, v, io.Discard); !errors.Is(err, ErrTampered) {
		t.Fatalf("a tarball whose integrity is not the registry's: %v", err)
	}
	fakeNPM(t, tgz, mustIntegrity(t, tgz))
	bin, err := InstallVersion(t.Context(), dir, v, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyVersion(t.Context(), bin, v); err != nil {
		t.Fatalf("the installed binary: %v", err)
	}
	// The same --version, other bytes: refused.
	os.WriteFile(bin, []byte("#!/bin/sh\necho "+v+"\n# evil\n"), 0o755)
	if err := VerifyVersion(t.Context(), bin, v); !errors.Is(err, ErrTampered) {
		t.Fatalf("a substituted binary: %v", err)
	}
	// A binary of that version that no install put there has no known
	// bytes at all.
	loose := filepath.Join(t.TempDir(), "opencode")
	os.WriteFile(loose, []byte("#!/bin/sh\necho "+v+"\n"), 0o755)
	if err := VerifyVersion(t.Context(), loose, v); !errors.Is(err, ErrTampered) {
		t.Fatalf("a binary of unknown provenance: %v", err)
	}
}

// The pinned version's bytes are fixed in the source: a binary that
// prints the pinned version but is not it is refused.
func TestVerifyRefusesASubstitutedBinary(t *testing.T) {
	if _, ok := PinOf(Version); !ok {
		t.Skip("no pin for this platform")
	}
	fake := filepath.Join(t.TempDir(), "opencode")
	os.WriteFile(fake, []byte("#!/bin/sh\necho "+Version+"\n"), 0o755)
	err := Verify(t.Context(), fake)
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "substituted") {
		t.Fatalf("a binary that only says it is %s: %v", Version, err)
	}
}

// A hostile package: the binary as a symlink out of the tree is refused.
func TestUnpackRefusesHostileEntries(t *testing.T) {
	dir := t.TempDir()
	tgz := filepath.Join(dir, "p.tgz")
	os.WriteFile(tgz, tarball(t, nil, "/etc/shadow"), 0o644)
	if _, err := unpackBinary(tgz, filepath.Join(dir, "out", "opencode")); err == nil {
		t.Fatal("a symlinked binary was unpacked")
	}
	os.WriteFile(tgz, tarball(t, map[string]string{"package/README": "x"}, ""), 0o644)
	if _, err := unpackBinary(tgz, filepath.Join(dir, "out2", "opencode")); err == nil || !strings.Contains(err.Error(), "no bin/opencode") {
		t.Fatalf("a package without the binary: %v", err)
	}
}

func mustIntegrity(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "x")
	os.WriteFile(p, b, 0o644)
	s, err := integrity(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The real pinned binary (as `make test` installs it) is what the pin says.
func TestThePinnedBinaryVerifies(t *testing.T) {
	bin := os.Getenv("TAOSAGENT_OPENCODE")
	if bin == "" {
		t.Skip("TAOSAGENT_OPENCODE is not set (make test sets it)")
	}
	if err := Verify(t.Context(), bin); err != nil {
		t.Fatal(err)
	}
}
