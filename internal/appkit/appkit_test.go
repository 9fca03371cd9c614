package appkit

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/testenv"
)

var dns = testenv.FakeDNS{"api.example.com": "93.184.216.34", "cdn.example.com": "93.184.216.35", "evil.example.com": "169.254.169.254"}

func opts() Options { return Options{Resolver: dns} }

// scaffold writes a fresh scaffold and returns its directory.
func scaffold(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app")
	if _, err := New(dir, "Notes"); err != nil {
		t.Fatal(err)
	}
	return dir
}

// files reads a directory into a map, for building archives from it.
func files(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			data, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			out[filepath.ToSlash(rel)] = string(data)
		}
		return nil
	})
	return out
}

func editManifest(t *testing.T, fs map[string]string, edit func(m map[string]any)) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(fs[ManifestName]), &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	data, _ := json.Marshal(m)
	fs[ManifestName] = string(data)
}

type entry struct {
	name string
	data []byte
	mode fs.FileMode
	// raw: store data as-is with these declared sizes (a lying header)
	raw                bool
	declared, crc      uint32
	method             uint16
	flags              uint16
	deflateCompression bool
}

func zipOf(t *testing.T, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Flags: e.flags}
		if e.mode != 0 {
			h.SetMode(e.mode)
		}
		if e.raw {
			h.Method = e.method
			h.CompressedSize64 = uint64(len(e.data))
			h.UncompressedSize64 = uint64(e.declared)
			h.CRC32 = e.crc
			w, err := zw.CreateRaw(h)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(e.data)
			continue
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(e.data)
	}
	zw.Close()
	return buf.Bytes()
}

func zipFiles(t *testing.T, fs map[string]string, extra ...entry) []byte {
	var es []entry
	for name, data := range fs {
		es = append(es, entry{name: name, data: []byte(data)})
	}
	return zipOf(t, append(es, extra...))
}

func rules(rep *Report, sev Severity) map[string]bool {
	out := map[string]bool{}
	for _, f := range rep.Findings {
		if f.Severity == sev {
			out[f.Rule] = true
		}
	}
	return out
}

func TestScaffoldPasses(t *testing.T) {
	dir := scaffold(t)
	rep, err := Validate(context.Background(), dir, opts())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || len(rep.Findings) != 0 {
		t.Fatalf("scaffold does not pass cleanly:\n%s", rep.Text())
	}
	if rep.Manifest.ID != "local.notes" || rep.Manifest.Version != "0.1.0" {
		t.Errorf("manifest = %+v", rep.Manifest)
	}
	if _, err := New(dir, "Notes"); err == nil {
		t.Error("New over an existing directory succeeded")
	}
	if _, err := New(filepath.Join(t.TempDir(), "x"), "<script>"); err == nil {
		t.Error("New accepted a name the schema forbids")
	}
}

// TestHostileArchives builds each attack as an archive and requires the
// finding that names it.
func TestHostileArchives(t *testing.T) {
	good := files(t, scaffold(t))
	bomb := bytes.Repeat([]byte{0}, 20<<20)
	var bombZ bytes.Buffer
	fw, _ := flate.NewWriter(&bombZ, flate.BestCompression)
	fw.Write(bomb)
	fw.Close()

	cases := []struct {
		name    string
		archive func() []byte
		rule    string
	}{
		{"path traversal", func() []byte { return zipFiles(t, good, entry{name: "../../etc/cron.d/evil.js", data: []byte("x")}) }, "archive.path-traversal"},
		{"nested traversal", func() []byte { return zipFiles(t, good, entry{name: "a/../../b.js", data: []byte("x")}) }, "archive.path-traversal"},
		{"absolute path", func() []byte { return zipFiles(t, good, entry{name: "/etc/passwd.txt", data: []byte("x")}) }, "archive.absolute-path"},
		{"drive letter", func() []byte { return zipFiles(t, good, entry{name: "C:/x.js", data: []byte("x")}) }, "archive.absolute-path"},
		{"backslash", func() []byte { return zipFiles(t, good, entry{name: `..\..\x.js`, data: []byte("x")}) }, "archive.bad-name"},
		{"symlink", func() []byte {
			return zipFiles(t, good, entry{name: "link.js", data: []byte("/etc/shadow"), mode: fs.ModeSymlink | 0o777})
		}, "archive.symlink"},
		{"duplicate", func() []byte { return zipFiles(t, good, entry{name: "app.js", data: []byte("evil()")}) }, "archive.duplicate"},
		{"case collision", func() []byte { return zipFiles(t, good, entry{name: "App.js", data: []byte("evil()")}) }, "archive.case-collision"},
		{"too many files", func() []byte {
			var es []entry
			for i := 0; i < 1001; i++ {
				es = append(es, entry{name: "f" + strings.Repeat("x", i%5) + string(rune('a'+i%26)) + "/" + time.Duration(i).String() + ".txt", data: []byte("x")})
			}
			return zipFiles(t, good, es...)
		}, "archive.file-count"},
		{"zip bomb, honest header", func() []byte {
			return zipFiles(t, good, entry{name: "zeros.txt", data: bombZ.Bytes(), raw: true, method: zip.Deflate, declared: uint32(len(bomb)), crc: crc32.ChecksumIEEE(bomb)})
		}, "archive.compression-ratio"},
		{"zip bomb, lying header", func() []byte {
			return zipFiles(t, good, entry{name: "zeros.txt", data: bombZ.Bytes(), raw: true, method: zip.Deflate, declared: 1000, crc: crc32.ChecksumIEEE(bomb[:1000])})
		}, "archive.corrupt"},
		{"file over the size limit", func() []byte {
			big := bytes.Repeat([]byte("0123456789abcdef"), 3<<20) // 48 MiB, compresses well below 100:1? no: check size first
			return zipFiles(t, good, entry{name: "big.txt", data: big})
		}, "archive.file-size"},
		{"encrypted entry", func() []byte {
			return zipFiles(t, good, entry{name: "secret.js", data: []byte("xxxx"), raw: true, method: zip.Store, declared: 4, flags: 0x1})
		}, "archive.encrypted"},
		{"executable", func() []byte { return zipFiles(t, good, entry{name: "lib.wasm", data: []byte("\x7fELF\x02\x01\x01")}) }, "archive.executable"},
		{"shell script disguised", func() []byte { return zipFiles(t, good, entry{name: "run.js", data: []byte("#!/bin/sh\nrm -rf /")}) }, "archive.executable"},
		{"nested archive", func() []byte { return zipFiles(t, good, entry{name: "inner.png", data: zipFiles(t, good)}) }, "archive.executable"},
		{"file type", func() []byte { return zipFiles(t, good, entry{name: "install.sh", data: []byte("echo")}) }, "archive.file-type"},
		{"dotfile", func() []byte { return zipFiles(t, good, entry{name: ".env", data: []byte("KEY=1")}) }, "archive.file-type"},
		{"not a zip", func() []byte { return []byte("this is not an archive") }, "archive.corrupt"},
		{"truncated zip", func() []byte { z := zipFiles(t, good); return z[:len(z)/2] }, "archive.corrupt"},
		{"no manifest", func() []byte {
			fs := map[string]string{}
			for k, v := range good {
				if k != ManifestName {
					fs[k] = v
				}
			}
			return zipFiles(t, fs)
		}, "manifest.missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := ValidateBytes(context.Background(), c.name, c.archive(), opts())
			if rep.OK {
				t.Fatalf("hostile archive passed:\n%s", rep.Text())
			}
			if !rules(rep, Error)[c.rule] {
				t.Fatalf("no %s finding:\n%s", c.rule, rep.Text())
			}
		})
	}
	// The same files, well-formed, pass as an archive.
	if rep := ValidateBytes(context.Background(), "good", zipFiles(t, good), opts()); !rep.OK {
		t.Fatalf("the scaffold as an archive fails:\n%s", rep.Text())
	}
}

func TestDirectoryChecks(t *testing.T) {
	dir := scaffold(t)
	os.Symlink("/etc/shadow", filepath.Join(dir, "shadow.txt"))
	os.WriteFile(filepath.Join(dir, "tool.exe"), []byte("MZ"), 0o644)
	rep, err := Validate(context.Background(), dir, opts())
	if err != nil {
		t.Fatal(err)
	}
	got := rules(rep, Error)
	for _, want := range []string{"archive.symlink", "archive.file-type"} {
		if !got[want] {
			t.Errorf("no %s finding:\n%s", want, rep.Text())
		}
	}
}

func TestManifestRules(t *testing.T) {
	cases := []struct {
		name string
		edit func(m map[string]any)
		raw  string
		rule string
		path string
	}{
		{name: "bad json", raw: `{"id": `, rule: "manifest.json"},
		{name: "repeated key", raw: `{"id":"local.a1","id":"com.bank.app","name":"n","version":"1.0.0","type":"web","entry":"index.html","icon":"icon.svg"}`, rule: "manifest.json"},
		{name: "trailing data", raw: `{} {}`, rule: "manifest.json"},
		{name: "unknown field", edit: func(m map[string]any) { m["permissions"] = "all" }, rule: "manifest.schema", path: "manifest.json#/permissions"},
		{name: "missing id", edit: func(m map[string]any) { delete(m, "id") }, rule: "manifest.schema", path: "manifest.json#/id"},
		{name: "bad id", edit: func(m map[string]any) { m["id"] = "Notes App" }, rule: "manifest.schema", path: "manifest.json#/id"},
		{name: "bad version", edit: func(m map[string]any) { m["version"] = "1.0" }, rule: "manifest.schema", path: "manifest.json#/version"},
		{name: "leading zero version", edit: func(m map[string]any) { m["version"] = "01.0.0" }, rule: "manifest.schema"},
		{name: "wrong type", edit: func(m map[string]any) { m["type"] = "native" }, rule: "manifest.schema", path: "manifest.json#/type"},
		{name: "unknown capability", edit: func(m map[string]any) { m["capabilities"] = []string{"root"} }, rule: "manifest.schema", path: "manifest.json#/capabilities/0"},
		{name: "repeated capability", edit: func(m map[string]any) { m["capabilities"] = []string{"camera", "camera"} }, rule: "manifest.schema"},
		{name: "number as name", edit: func(m map[string]any) { m["name"] = 5 }, rule: "manifest.schema", path: "manifest.json#/name"},
		{name: "entry missing", edit: func(m map[string]any) { m["entry"] = "main.html" }, rule: "manifest.entry"},
		{name: "entry not html", edit: func(m map[string]any) { m["entry"] = "app.js" }, rule: "manifest.schema"},
		{name: "entry escapes", edit: func(m map[string]any) { m["entry"] = "../index.html" }, rule: "manifest.schema"},
		{name: "icon missing", edit: func(m map[string]any) { m["icon"] = "logo.png" }, rule: "manifest.icon"},
		{name: "allowlist without capability", edit: func(m map[string]any) { m["network_allowlist"] = []string{"https://api.example.com"} }, rule: "manifest.capability"},
	}
	base := files(t, scaffold(t))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := map[string]string{}
			for k, v := range base {
				fs[k] = v
			}
			if c.raw != "" {
				fs[ManifestName] = c.raw
			} else {
				editManifest(t, fs, c.edit)
			}
			rep := ValidateBytes(context.Background(), c.name, zipFiles(t, fs), opts())
			found := false
			for _, f := range rep.Findings {
				if f.Rule == c.rule && f.Severity == Error && (c.path == "" || f.Path == c.path) {
					found = true
				}
			}
			if rep.OK || !found {
				t.Fatalf("want error %s at %q:\n%s", c.rule, c.path, rep.Text())
			}
		})
	}
}

func TestURLs(t *testing.T) {
	base := files(t, scaffold(t))
	cases := []struct {
		allow    []string
		homepage string
		rule     string
		sev      Severity
	}{
		{allow: []string{"http://api.example.com"}, rule: "url.scheme", sev: Error},
		{allow: []string{"https://127.0.0.1"}, rule: "url.blocked", sev: Error},
		{allow: []string{"https://2130706433"}, rule: "url.blocked", sev: Error},
		{allow: []string{"https://0x7f.1"}, rule: "url.blocked", sev: Error},
		{allow: []string{"https://[::ffff:169.254.169.254]"}, rule: "url.blocked", sev: Error},
		{allow: []string{"https://evil.example.com"}, rule: "url.blocked", sev: Error},
		{allow: []string{"https://localhost"}, rule: "url.host", sev: Error},
		{allow: []string{"https://api.example.com/v1/data"}, rule: "url.not-origin", sev: Error},
		{allow: []string{"https://unknown.example.org"}, rule: "url.unresolvable", sev: Warning},
		{homepage: "https://10.0.0.1/", rule: "url.blocked", sev: Error},
		{homepage: "javascript:alert(1)", rule: "url.host", sev: Error},
	}
	for _, c := range cases {
		fs := map[string]string{}
		for k, v := range base {
			fs[k] = v
		}
		editManifest(t, fs, func(m map[string]any) {
			if c.allow != nil {
				m["network_allowlist"] = c.allow
				m["capabilities"] = []string{"network"}
			}
			if c.homepage != "" {
				m["homepage"] = c.homepage
			}
		})
		rep := ValidateBytes(context.Background(), "urls", zipFiles(t, fs), opts())
		if !rules(rep, c.sev)[c.rule] {
			t.Errorf("%v %s: want %s %s:\n%s", c.allow, c.homepage, c.sev, c.rule, rep.Text())
		}
		if rep.OK != (c.sev != Error) {
			t.Errorf("%v %s: ok = %v", c.allow, c.homepage, rep.OK)
		}
	}
}

func TestSecrets(t *testing.T) {
	base := files(t, scaffold(t))
	cases := []struct {
		file, content, rule string
		sev                 Severity
	}{
		{"key.txt", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n", "secret.private-key", Error},
		{"rsa.txt", "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n", "secret.private-key", Error},
		{"app2.js", `const k = "AKIAIOSFODNN7EXAMPLE";`, "secret.api-key", Error},
		{"gh.js", `fetch(u, {headers: {Authorization: "token ghp_0123456789abcdefghijABCDEFGHIJ012345"}})`, "secret.api-key", Error},
		{"ai.js", `const key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD";`, "secret.api-key", Error},
		{"g.js", `const g = "AIzaSyA-0123456789abcdefghijklmnopqrstu";`, "secret.api-key", Error},
		{"config.json", `{"token": "q8ZrT1vX9mK2pL7wN4bY6cF3hJ0sD5gA"}`, "secret.high-entropy", Warning},
	}
	for _, c := range cases {
		fs := map[string]string{c.file: c.content}
		for k, v := range base {
			fs[k] = v
		}
		rep := ValidateBytes(context.Background(), c.file, zipFiles(t, fs), opts())
		if !rules(rep, c.sev)[c.rule] {
			t.Errorf("%s: want %s %s:\n%s", c.file, c.sev, c.rule, rep.Text())
		}
		// A report never repeats the secret.
		out, _ := json.Marshal(rep)
		for _, tok := range regexp.MustCompile(`[A-Za-z0-9+/=_\-]{24,}`).FindAllString(c.content, -1) {
			if strings.Contains(string(out), tok) {
				t.Errorf("%s: the report repeats the secret %.6s…", c.file, tok)
			}
		}
	}
	// Ordinary config does not trip the entropy rule.
	fs := map[string]string{"settings.json": `{"title": "My notes application", "theme": "dark", "integrity": "sha384-oqVuAfXRKap7fdgcCY5uykM6+R9GqQ8K/uxy9rx7HNQlGYl1kPzQho1wx4JwY8wC"}`}
	for k, v := range base {
		fs[k] = v
	}
	if rep := ValidateBytes(context.Background(), "plain", zipFiles(t, fs), opts()); len(rep.Findings) != 0 {
		t.Errorf("plain config flagged:\n%s", rep.Text())
	}
}

func TestWebBundle(t *testing.T) {
	base := files(t, scaffold(t))
	page := func(head string) string {
		return `<!doctype html><html><head>` + head + `</head><body></body></html>`
	}
	const csp = `<meta http-equiv="Content-Security-Policy" content="default-src 'self'; script-src 'self' https://cdn.example.com">`
	cases := []struct {
		name, html string
		rule       string
		sev        Severity
	}{
		{"no CSP", page(`<script src="app.js"></script>`), "web.csp-missing", Error},
		{"CSP in a comment only", page(`<!-- ` + csp + ` --><script src="app.js"></script>`), "web.csp-missing", Error},
		{"CSP without script policy", page(`<meta http-equiv="content-security-policy" content="img-src 'self'">`), "web.csp-weak", Error},
		{"CSP allows any https", page(`<meta http-equiv="Content-Security-Policy" content="script-src 'self' https:">`), "web.csp-weak", Error},
		{"CSP allows unlisted host", page(`<meta http-equiv="Content-Security-Policy" content="script-src 'self' https://evil.example.net">`), "web.csp-host", Error},
		{"CSP connect to unlisted host", page(`<meta http-equiv="Content-Security-Policy" content="default-src 'self'; connect-src https://tracker.example.net">`), "web.csp-host", Error},
		{"CSP unsafe-eval", page(`<meta http-equiv="Content-Security-Policy" content="script-src 'self' 'unsafe-eval'">`), "web.csp-weak", Warning},
		{"remote script", page(csp + `<script src="https://evil.example.net/x.js"></script>`), "web.script-source", Error},
		{"protocol-relative script", page(csp + `<script src=//evil.example.net/x.js></script>`), "web.script-source", Error},
		{"http script from listed host", page(csp + `<script src="http://cdn.example.com/x.js"></script>`), "web.script-source", Error},
		{"data script", page(csp + `<script src="data:text/javascript,alert(1)"></script>`), "web.script-source", Error},
		{"missing local script", page(csp + `<script src="lib/missing.js"></script>`), "web.script-missing", Error},
		{"modulepreload remote", page(csp + `<link rel="modulepreload" href="https://evil.example.net/m.js">`), "web.script-source", Error},
		// Found in review, each passing the old lexical scan:
		{"no connect-src nor default-src, fetching an unlisted host", `<!doctype html><html><head>` +
			`<meta http-equiv="Content-Security-Policy" content="script-src 'self'"><script src="app.js"></script></head>` +
			`<body></body></html>`, "web.csp-connect", Error},
		{"CSP meta inside a JavaScript string", page(`<script>var s = '<meta http-equiv="Content-Security-Policy" content="default-src \'self\'">';</script>`), "web.csp-missing", Error},
		{"CSP meta after an inline script", page(`<script>fetch("https://evil.example.net/x")</script>` + csp), "web.csp-placement", Error},
		{"CSP meta in the body", `<!doctype html><html><head></head><body>` + csp + `</body></html>`, "web.csp-placement", Error},
		{"entity-encoded src", page(csp + `<script src="https&#58;//evil.example.net/x.js"></script>`), "web.script-source", Error},
		{"> inside a quoted attribute hiding a src", page(csp + `<script data-x="a>b" src="https://evil.example.net/x.js"></script>`), "web.script-source", Error},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := map[string]string{}
			for k, v := range base {
				fs[k] = v
			}
			fs["index.html"] = c.html
			editManifest(t, fs, func(m map[string]any) {
				m["capabilities"] = []string{"network"}
				m["network_allowlist"] = []string{"https://cdn.example.com"}
			})
			rep := ValidateBytes(context.Background(), c.name, zipFiles(t, fs), opts())
			if !rules(rep, c.sev)[c.rule] {
				t.Fatalf("want %s %s:\n%s", c.sev, c.rule, rep.Text())
			}
		})
	}
	t.Run("allowlisted script and import pass", func(t *testing.T) {
		fs := map[string]string{}
		for k, v := range base {
			fs[k] = v
		}
		fs["index.html"] = page(csp + `<script src="https://cdn.example.com/lib.js"></script><script type="module" src="./app.js"></script>`)
		fs["app.js"] = `import { x } from "https://cdn.example.com/x.mjs"; import("./app.js");`
		editManifest(t, fs, func(m map[string]any) {
			m["capabilities"] = []string{"network"}
			m["network_allowlist"] = []string{"https://cdn.example.com"}
		})
		if rep := ValidateBytes(context.Background(), "ok", zipFiles(t, fs), opts()); !rep.OK {
			t.Fatalf("fails:\n%s", rep.Text())
		}
	})
	t.Run("import from an unlisted host", func(t *testing.T) {
		fs := map[string]string{}
		for k, v := range base {
			fs[k] = v
		}
		fs["app.js"] = `import evil from 'https://evil.example.net/e.mjs';`
		if rep := ValidateBytes(context.Background(), "imp", zipFiles(t, fs), opts()); !rules(rep, Error)["web.script-source"] {
			t.Fatalf("want web.script-source:\n%s", rep.Text())
		}
	})
}

func TestPackageIsDeterministic(t *testing.T) {
	dir := scaffold(t)
	out1 := filepath.Join(t.TempDir(), "a.taosapp")
	out2 := filepath.Join(t.TempDir(), "b.taosapp")
	rep1, err := Package(context.Background(), dir, out1, opts())
	if err != nil {
		t.Fatal(err)
	}
	// Touch every file and change a mode: the archive must not change.
	later := time.Now().Add(time.Hour)
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		os.Chtimes(p, later, later)
		return nil
	})
	os.Chmod(filepath.Join(dir, "app.js"), 0o600)
	rep2, err := Package(context.Background(), dir, out2, opts())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out1)
	b, _ := os.ReadFile(out2)
	if !bytes.Equal(a, b) || rep1.SHA256 != rep2.SHA256 || rep1.SHA256 != sum(a) {
		t.Fatalf("two packages of the same files differ: %s vs %s", rep1.SHA256, rep2.SHA256)
	}
	// The archive validates, with the same hash.
	rep, err := Validate(context.Background(), out1, opts())
	if err != nil || !rep.OK || rep.SHA256 != rep1.SHA256 {
		t.Fatalf("packaged archive: err %v\n%s", err, rep.Text())
	}
	// A change of content changes the archive.
	os.WriteFile(filepath.Join(dir, "app.js"), []byte("// changed\n"), 0o644)
	rep3, err := Package(context.Background(), dir, out2, opts())
	if err != nil || rep3.SHA256 == rep1.SHA256 {
		t.Fatalf("changed content, same hash (err %v)", err)
	}
}

func TestPackageRefusesFailingApp(t *testing.T) {
	dir := scaffold(t)
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("<html><script src=https://evil.example.net/x.js></script></html>"), 0o644)
	out := filepath.Join(t.TempDir(), "x.taosapp")
	rep, err := Package(context.Background(), dir, out, opts())
	if err == nil || rep == nil || rep.OK {
		t.Fatalf("package of a failing app: err %v", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("an archive was written for a failing app")
	}
}

func TestAgainst(t *testing.T) {
	oldDir := scaffold(t)
	oldPkg := filepath.Join(t.TempDir(), "old.taosapp")
	if _, err := Package(context.Background(), oldDir, oldPkg, opts()); err != nil {
		t.Fatal(err)
	}
	newDir := scaffold(t)
	fs := files(t, newDir)
	editManifest(t, fs, func(m map[string]any) {
		m["version"] = "0.2.0"
		m["capabilities"] = []string{"network", "camera"}
		m["network_allowlist"] = []string{"https://api.example.com"}
	})
	os.WriteFile(filepath.Join(newDir, ManifestName), []byte(fs[ManifestName]), 0o644)
	o := opts()
	o.Against = oldPkg
	rep, err := Validate(context.Background(), newDir, o)
	if err != nil {
		t.Fatal(err)
	}
	var added []string
	for _, f := range rep.Findings {
		if strings.HasPrefix(f.Rule, "diff.") {
			added = append(added, f.Rule+" "+f.Message)
		}
	}
	want := []string{"capability camera added", "capability network added", "host https://api.example.com added"}
	for _, w := range want {
		if !strings.Contains(strings.Join(added, "\n"), w) {
			t.Errorf("diff lacks %q:\n%s", w, rep.Text())
		}
	}
	if !rep.OK {
		t.Errorf("added capabilities are for review, not a failure:\n%s", rep.Text())
	}
	// Same version again, and a changed id, are errors.
	editManifest(t, fs, func(m map[string]any) { m["version"] = "0.1.0"; m["id"] = "local.other" })
	os.WriteFile(filepath.Join(newDir, ManifestName), []byte(fs[ManifestName]), 0o644)
	rep, _ = Validate(context.Background(), newDir, o)
	if got := rules(rep, Error); !got["diff.version"] || !got["diff.id-changed"] {
		t.Errorf("want diff.version and diff.id-changed:\n%s", rep.Text())
	}
}

func TestSchemaValidatorRefusesUnknownKeywords(t *testing.T) {
	if _, err := compileSchema([]byte(`{"type":"object","properties":{"a":{"type":"string","format":"uri"}}}`)); err == nil {
		t.Fatal("a schema keyword the validator ignores was accepted")
	}
	if _, err := compileSchema(ManifestSchema()); err != nil {
		t.Fatalf("the manifest schema: %v", err)
	}
}

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{{"1.0.0", "1.0.0", 0}, {"1.0.1", "1.0.0", 1}, {"1.10.0", "1.9.0", 1}, {"1.0.0-rc.1", "1.0.0", -1}, {"2.0.0", "10.0.0", -1}} {
		if got := compareVersions(c.a, c.b); got != c.want {
			t.Errorf("compare(%s, %s) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

// A workspace written while the daemon reads it: a name swapped for a
// symbolic link out of it (after the walk saw a regular file) is never
// followed out.
func TestReadInNeverLeavesTheDirectory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ok.js"), []byte("x"), 0o644)
	os.Symlink("/etc/passwd", filepath.Join(dir, "swapped.js"))
	os.Symlink("ok.js", filepath.Join(dir, "inside.js"))
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, err := readIn(root, "swapped.js", 1<<20); err == nil {
		t.Fatal("a link out of the directory was followed")
	}
	if b, err := readIn(root, "ok.js", 1<<20); err != nil || string(b) != "x" {
		t.Fatalf("a plain file: %q %v", b, err)
	}
	os.WriteFile(filepath.Join(dir, "big.js"), make([]byte, 100), 0o644)
	if _, err := readIn(root, "big.js", 10); err == nil {
		t.Fatal("a file over the limit was read whole")
	}
}
