package appkit

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
)

// The web checks are a lexical scan of HTML and JavaScript: they find what
// a page loads and the policy it declares, without running anything.
var (
	commentRe   = regexp.MustCompile(`(?s)<!--.*?-->`)
	tagRe       = regexp.MustCompile(`(?is)<(script|meta|link)\b([^>]*)>`)
	attrRe      = regexp.MustCompile(`(?is)([a-z][a-z0-9_:-]*)\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)`)
	jsImportRe  = regexp.MustCompile(`(?:\bimport\s*\(\s*|\bfrom\s*|\bimport\s+|\bimportScripts\s*\(\s*)["'\x60]((?:https?:)?//[^"'\x60\s]+)`)
	cspDirSplit = regexp.MustCompile(`\s*;\s*`)
)

func attrs(s string) map[string]string {
	out := map[string]string{}
	for _, m := range attrRe.FindAllStringSubmatch(s, -1) {
		v := m[2]
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out[strings.ToLower(m[1])] = strings.TrimSpace(v)
	}
	return out
}

// origins is the manifest's allowlist as scheme://host[:port] strings.
type origins map[string]bool

func (o origins) allows(u *url.URL) bool {
	if u.Scheme != "https" {
		return false
	}
	host := strings.ToLower(u.Host)
	if o["https://"+host] {
		return true
	}
	for origin := range o {
		if base, ok := strings.CutPrefix(origin, "https://*."); ok && strings.HasSuffix(host, "."+base) {
			return true
		}
	}
	return false
}

// checkWeb checks every HTML page and script of the bundle.
func checkWeb(b *bundle, allow origins, add func(Finding)) {
	for _, name := range b.names {
		ext := strings.ToLower(path.Ext(name))
		switch ext {
		case ".html", ".htm":
			checkHTML(b, name, allow, add)
		case ".js", ".mjs":
			for _, m := range jsImportRe.FindAllSubmatch(b.files[name], 50) {
				checkScriptURL(b, name, string(m[1]), allow, add)
			}
		}
	}
}

func checkHTML(b *bundle, name string, allow origins, add func(Finding)) {
	doc := commentRe.ReplaceAllString(string(b.files[name]), "")
	var csp []string
	for _, m := range tagRe.FindAllStringSubmatch(doc, -1) {
		tag, a := strings.ToLower(m[1]), attrs(m[2])
		switch tag {
		case "script":
			if src, ok := a["src"]; ok {
				checkScriptURL(b, name, src, allow, add)
			}
		case "link":
			rel := strings.ToLower(a["rel"])
			if rel == "modulepreload" || rel == "preload" && strings.EqualFold(a["as"], "script") {
				checkScriptURL(b, name, a["href"], allow, add)
			}
		case "meta":
			if strings.EqualFold(a["http-equiv"], "content-security-policy") {
				csp = append(csp, a["content"])
			}
		}
	}
	if len(csp) == 0 {
		add(Finding{Rule: "web.csp-missing", Path: name, Severity: Error,
			Message: `no Content Security Policy; add <meta http-equiv="Content-Security-Policy" content="default-src 'self'"> to <head>`})
		return
	}
	for _, p := range csp {
		checkCSP(name, p, allow, add)
	}
}

// checkScriptURL: a script comes from the package or from an allowlisted
// https origin, nowhere else.
func checkScriptURL(b *bundle, page, src string, allow origins, add func(Finding)) {
	u, err := url.Parse(src)
	if err != nil {
		add(Finding{Rule: "web.script-source", Path: page, Severity: Error, Message: fmt.Sprintf("unreadable script address %q", src)})
		return
	}
	switch {
	case u.Scheme == "" && u.Host == "":
		target := path.Clean(path.Join(path.Dir(page), u.Path))
		if strings.HasPrefix(u.Path, "/") {
			target = strings.TrimPrefix(path.Clean(u.Path), "/")
		}
		if _, ok := b.files[target]; !ok {
			add(Finding{Rule: "web.script-missing", Path: page, Severity: Error, Message: fmt.Sprintf("script %q is not in the package", src)})
		}
	case u.Host != "" && (u.Scheme == "" || u.Scheme == "https") && allow.allows(&url.URL{Scheme: "https", Host: u.Host}):
	default:
		add(Finding{Rule: "web.script-source", Path: page, Severity: Error,
			Message: fmt.Sprintf("script from %q, which is neither in the package nor on the network allowlist", src)})
	}
}

// checkCSP checks the policy that governs scripts and connections.
func checkCSP(page, policy string, allow origins, add func(Finding)) {
	dirs := map[string][]string{}
	for _, d := range cspDirSplit.Split(strings.TrimSpace(policy), -1) {
		f := strings.Fields(d)
		if len(f) > 0 {
			dirs[strings.ToLower(f[0])] = f[1:]
		}
	}
	pick := func(name string) ([]string, bool) {
		if v, ok := dirs[name]; ok {
			return v, true
		}
		v, ok := dirs["default-src"]
		return v, ok
	}
	scripts, ok := pick("script-src")
	if !ok {
		add(Finding{Rule: "web.csp-weak", Path: page, Severity: Error, Message: "the Content Security Policy has neither script-src nor default-src, so it does not restrict scripts"})
	}
	checkSources(page, "script-src", scripts, allow, add)
	if conns, ok := pick("connect-src"); ok {
		checkSources(page, "connect-src", conns, allow, add)
	}
}

func checkSources(page, dir string, srcs []string, allow origins, add func(Finding)) {
	for _, s := range srcs {
		low := strings.ToLower(s)
		switch {
		case low == "'self'", low == "'none'", low == "'strict-dynamic'", low == "'wasm-unsafe-eval'", low == "'report-sample'",
			strings.HasPrefix(low, "'nonce-"), strings.HasPrefix(low, "'sha256-"), strings.HasPrefix(low, "'sha384-"), strings.HasPrefix(low, "'sha512-"):
		case low == "'unsafe-inline'", low == "'unsafe-eval'":
			add(Finding{Rule: "web.csp-weak", Path: page, Severity: Warning, Message: fmt.Sprintf("%s allows %s", dir, s)})
		case low == "*", low == "http:", low == "https:", low == "data:", low == "blob:", low == "ws:", low == "wss:", low == "filesystem:":
			add(Finding{Rule: "web.csp-weak", Path: page, Severity: Error, Message: fmt.Sprintf("%s allows any source of the form %s", dir, s)})
		default:
			u, err := url.Parse(s)
			if err != nil || u.Host == "" {
				u, err = url.Parse("https://" + s)
			}
			if err != nil || !allow.allows(&url.URL{Scheme: "https", Host: u.Host}) || u.Scheme != "https" {
				add(Finding{Rule: "web.csp-host", Path: page, Severity: Error,
					Message: fmt.Sprintf("%s allows %s, which is not an https origin on the network allowlist", dir, s)})
			}
		}
	}
}
