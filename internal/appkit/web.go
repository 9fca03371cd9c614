package appkit

import (
	"bytes"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"

	"golang.org/x/net/html"
)

// The web checks read HTML with a real tokenizer (golang.org/x/net/html:
// attributes as a browser reads them, entities decoded, script bodies as
// raw text) and JavaScript lexically: they find what a page loads and the
// policy it declares, without running anything.
var (
	jsImportRe  = regexp.MustCompile(`(?:\bimport\s*\(\s*|\bfrom\s*|\bimport\s+|\bimportScripts\s*\(\s*)["'\x60]((?:https?:)?//[^"'\x60\s]+)`)
	cspDirSplit = regexp.MustCompile(`\s*;\s*`)
)

// headElements may appear in a document's head, which they open implicitly
// when no <head> tag does; any other element starts the body.
var headElements = map[string]bool{"html": true, "head": true, "meta": true, "link": true, "title": true,
	"style": true, "script": true, "base": true, "noscript": true, "template": true}

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
	csp := scanHTML(b, name, func(src string) { checkScriptURL(b, name, src, allow, add) }, add)
	if len(csp) == 0 {
		add(Finding{Rule: "web.csp-missing", Path: name, Severity: Error,
			Message: `no Content Security Policy; add <meta http-equiv="Content-Security-Policy" content="default-src 'self'"> to <head>, before any script`})
		return
	}
	for _, p := range csp {
		checkCSP(name, p, allow, add)
	}
}

// cspOf is the policies page name declares, as a browser takes them.
func cspOf(b *bundle, name string, add func(Finding)) []string {
	return scanHTML(b, name, func(string) {}, add)
}

// scanHTML reads page name with the tokenizer: it calls script with the
// address of every script it loads, and returns the policies of its CSP
// <meta>s that count (in <head>, before any script; others are findings).
func scanHTML(b *bundle, name string, script func(src string), add func(Finding)) []string {
	z := html.NewTokenizer(bytes.NewReader(b.files[name]))
	var csp []string
	inHead, scripted := true, false // the head is open (explicitly or not); a script came before
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			return csp
		}
		tok := z.Token()
		if tt == html.EndTagToken && tok.Data == "head" {
			inHead = false
		}
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			continue
		}
		if !headElements[tok.Data] {
			inHead = false
		}
		a := map[string]string{}
		for _, at := range tok.Attr {
			if _, dup := a[at.Key]; !dup { // a browser keeps the first
				a[at.Key] = strings.TrimSpace(at.Val)
			}
		}
		switch tok.Data {
		case "body":
			inHead = false
		case "script":
			scripted = true
			if src, ok := a["src"]; ok {
				script(src)
			}
		case "link":
			rel := strings.ToLower(a["rel"])
			if rel == "modulepreload" || rel == "preload" && strings.EqualFold(a["as"], "script") {
				script(a["href"])
			}
		case "meta":
			if !strings.EqualFold(a["http-equiv"], "content-security-policy") {
				continue
			}
			if !inHead || scripted {
				// A browser enforces a policy from a <meta> only in the
				// head, and only on what comes after it.
				add(Finding{Rule: "web.csp-placement", Path: name, Severity: Error,
					Message: "a Content Security Policy <meta> counts only in <head>, before any script; this one is not"})
				continue
			}
			csp = append(csp, a["content"])
		}
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
	conns, ok := pick("connect-src")
	if !ok {
		add(Finding{Rule: "web.csp-connect", Path: page, Severity: Error,
			Message: "the Content Security Policy has neither connect-src nor default-src, so the page may connect anywhere; add connect-src 'self' (and the allowlisted origins it needs)"})
	}
	checkSources(page, "connect-src", conns, allow, add)
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

// PagePolicy is the Content Security Policy a page declares as a browser
// would take it: the <meta> ones in <head> before any script, joined; ""
// when it has none.
func PagePolicy(page []byte) string {
	b := &bundle{files: map[string][]byte{"p.html": page}, names: []string{"p.html"}}
	return strings.Join(cspOf(b, "p.html", func(Finding) {}), ", ")
}
