package npmpkg

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeNPM writes a script that installs, as `npm install --prefix DIR …
// SPEC` would, a package whose package.json is pkgJSON; it fails when
// pkgJSON is "fail".
func fakeNPM(t *testing.T, pkgJSON string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "npm")
	script := `#!/bin/sh
prefix=$3; for a; do spec=$a; done
[ '` + pkgJSON + `' = fail ] && { echo "npm error 404 Not Found - $spec" >&2; exit 1; }
case " $* " in *" --prefer-offline "*) [ -n "$STALE_CACHE" ] && { echo "npm error code ETARGET" >&2; echo "npm error notarget No matching version found for dep@5.0.2." >&2; exit 1; };; esac
name=${spec%@*}
mkdir -p "$prefix/node_modules/$name/dist" && printf '%s' '` + pkgJSON + `' > "$prefix/node_modules/$name/package.json"
echo "$@" > "$prefix/args"
`
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAPackageIsInstalledOnceWithItsBin(t *testing.T) {
	in := &Installer{Root: t.TempDir(), NPM: fakeNPM(t, `{"name":"@scope/server-x","bin":{"mcp-server-x":"dist/index.js"}}`)}
	it, err := in.Ensure(context.Background(), "@scope/server-x@1.2.3", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(it.Dir, "node_modules", "@scope", "server-x", "dist", "index.js"); it.Bin != want {
		t.Errorf("bin %s, want %s", it.Bin, want)
	}
	args, _ := os.ReadFile(filepath.Join(it.Dir, "args"))
	if !strings.Contains(string(args), "--ignore-scripts") {
		t.Errorf("npm ran with %q: install scripts not switched off", args)
	}
	// A second Ensure finds it: npm does not run again.
	in.NPM = fakeNPM(t, "fail")
	if again, err := in.Ensure(context.Background(), "@scope/server-x@1.2.3", nil); err != nil || again != it {
		t.Errorf("again: %+v %v", again, err)
	}
}

func TestAFailedInstallLeavesNothing(t *testing.T) {
	root := t.TempDir()
	in := &Installer{Root: root, NPM: fakeNPM(t, "fail")}
	if _, err := in.Ensure(context.Background(), "x@1.0.0", nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("%v, want npm's words", err)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("left %v", ents)
	}
}

// TestAPackageWithoutABinToRunIsALibrary: a package whose bin is missing,
// ambiguous or outside it installs (a library, such as opencode's plugin
// package), with no bin to run and the reason.
func TestAPackageWithoutABinToRunIsALibrary(t *testing.T) {
	for name, pkg := range map[string]string{
		"no bin":             `{"name":"x"}`,
		"a bin out of it":    `{"name":"x","bin":"../../../etc/passwd"}`,
		"two bins, none its": `{"name":"x","bin":{"a":"a.js","b":"b.js"}}`,
	} {
		in := &Installer{Root: t.TempDir(), NPM: fakeNPM(t, pkg)}
		it, err := in.Ensure(context.Background(), "x@1.0.0", nil)
		if err != nil || it.Bin != "" || it.NoBin == nil {
			t.Errorf("%s: %+v %v, want installed with no bin, and why", name, it, err)
		}
	}
}

// npm's cache may hold metadata older than a version the registry has
// (ETARGET under --prefer-offline): the install asks for it afresh.
func TestAStaleCacheIsAskedAgainOnline(t *testing.T) {
	t.Setenv("STALE_CACHE", "1")
	in := &Installer{Root: t.TempDir(), NPM: fakeNPM(t, `{"name":"server-y","bin":"index.js"}`)}
	got, err := in.Ensure(context.Background(), "server-y@1.0.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	args, _ := os.ReadFile(filepath.Join(got.Dir, "args"))
	if !strings.Contains(string(args), "--prefer-online") {
		t.Fatalf("the second install's arguments: %s", args)
	}
}
