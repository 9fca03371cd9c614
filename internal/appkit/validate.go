// Package appkit defines the .taosapp package — a zip of a web app with
// manifest.json at its root — and creates, validates and packages them.
//
// Nothing in a package is trusted because an agent built it: Validate
// re-checks every archive from its bytes (paths, links, sizes, compression,
// file types), the manifest against manifest.schema.json, every URL against
// netguard, the files for secrets, and the web pages for where their
// scripts come from and the policy they declare.
package appkit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/taosagent/taosagent/internal/netguard"
)

// Severity of a finding. Only errors fail a validation.
type Severity string

const (
	Error   Severity = "error"
	Warning Severity = "warning"
	Info    Severity = "info"
)

// Finding is one problem, or one fact worth a look, in a package.
type Finding struct {
	Rule     string   `json:"rule"`           // stable identifier, such as archive.path-traversal
	Path     string   `json:"path,omitempty"` // file in the package, with #/pointer or :line where known
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
}

// Report is the outcome of Validate.
type Report struct {
	Source   string    `json:"source"`
	SHA256   string    `json:"sha256,omitempty"` // of the archive; empty for a directory
	Manifest *Manifest `json:"manifest,omitempty"`
	OK       bool      `json:"ok"` // no finding of severity error
	Findings []Finding `json:"findings"`
}

// Options tune Validate. The zero value validates with DefaultLimits and
// resolves host names with the system resolver.
type Options struct {
	Limits Limits
	// Resolver resolves the manifest's host names; nil uses the system's,
	// with a 3 s timeout per name. A name that does not resolve is a
	// warning, so validation works offline.
	Resolver netguard.Resolver
	// NoResolve judges host names by their spelling only.
	NoResolve bool
	// Strict refuses a host name that does not resolve (the gate does: an
	// app's connections are made by the browser, where nothing checks
	// them again).
	Strict bool
	// Against is the previous version of the app (archive or directory):
	// the capabilities and hosts added since are reported.
	Against string
}

// Validate checks the package at src, a .taosapp archive or a directory.
// The error is for a src that cannot be read at all; everything wrong
// inside it is a finding.
func Validate(ctx context.Context, src string, opt Options) (*Report, error) {
	rep, _, err := validate(ctx, src, opt)
	return rep, err
}

// validate is Validate that also returns the unpacked bundle.
func validate(ctx context.Context, src string, opt Options) (*Report, *bundle, error) {
	opt = opt.withDefaults()
	rep := &Report{Source: src, Findings: []Finding{}}
	add := func(f Finding) { rep.Findings = append(rep.Findings, f) }
	b, err := load(src, opt.Limits, add)
	if err != nil {
		return nil, nil, err
	}
	rep.SHA256 = b.sha
	rep.Manifest = checkBundle(ctx, b, opt, add)
	if opt.Against != "" && rep.Manifest != nil {
		old, err := load(opt.Against, opt.Limits, func(Finding) {})
		if err != nil {
			return nil, nil, fmt.Errorf("read the old version: %w", err)
		}
		var oldM *Manifest
		if data, ok := old.files[ManifestName]; ok {
			oldM = parseManifest(data, func(Finding) {})
		}
		if oldM == nil {
			add(Finding{Rule: "diff.old-manifest", Path: opt.Against, Severity: Error, Message: "the old version has no valid manifest to compare with"})
		} else {
			diff(oldM, rep.Manifest, add)
		}
	}
	finish(rep)
	return rep, b, nil
}

func (o Options) withDefaults() Options {
	if o.Limits == (Limits{}) {
		o.Limits = DefaultLimits()
	}
	return o
}

// ValidateBytes validates an archive held in memory, as received.
func ValidateBytes(ctx context.Context, name string, data []byte, opt Options) *Report {
	opt = opt.withDefaults()
	rep := &Report{Source: name, Findings: []Finding{}}
	add := func(f Finding) { rep.Findings = append(rep.Findings, f) }
	b := loadZip(data, opt.Limits, add)
	b.sha = sum(data)
	rep.SHA256 = b.sha
	rep.Manifest = checkBundle(ctx, b, opt, add)
	finish(rep)
	return rep
}

func finish(rep *Report) {
	rank := map[Severity]int{Error: 0, Warning: 1, Info: 2}
	sort.SliceStable(rep.Findings, func(i, j int) bool {
		a, b := rep.Findings[i], rep.Findings[j]
		if rank[a.Severity] != rank[b.Severity] {
			return rank[a.Severity] < rank[b.Severity]
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Rule < b.Rule
	})
	rep.OK = true
	for _, f := range rep.Findings {
		if f.Severity == Error {
			rep.OK = false
		}
	}
}

func load(src string, lim Limits, add func(Finding)) (*bundle, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return loadDir(src, lim, add)
	}
	if fi.Size() > lim.MaxArchive {
		add(Finding{Rule: "archive.size", Severity: Error, Message: fmt.Sprintf("archive is %d bytes, over the %d-byte limit", fi.Size(), lim.MaxArchive)})
		return &bundle{files: map[string][]byte{}}, nil
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return nil, err
	}
	b := loadZip(data, lim, add)
	b.sha = sum(data)
	return b, nil
}

func sum(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// checkBundle runs every check that reads the unpacked files, and returns
// the manifest if it is valid.
func checkBundle(ctx context.Context, b *bundle, opt Options, add func(Finding)) *Manifest {
	for _, name := range b.names {
		scanSecrets(name, b.files[name], add)
	}
	data, ok := b.files[ManifestName]
	if !ok {
		add(Finding{Rule: "manifest.missing", Path: ManifestName, Severity: Error, Message: "no manifest.json at the package root"})
		checkWeb(b, origins{}, add)
		return nil
	}
	m := parseManifest(data, add)
	if m == nil {
		checkWeb(b, origins{}, add)
		return nil
	}
	for _, f := range []struct{ field, path string }{{"entry", m.Entry}, {"icon", m.Icon}} {
		if _, ok := b.files[path.Clean(f.path)]; !ok || path.Clean(f.path) != f.path {
			add(Finding{Rule: "manifest." + f.field, Path: ManifestName + "#/" + f.field, Severity: Error,
				Message: fmt.Sprintf("%s %q is not a file in the package", f.field, f.path)})
		}
	}
	allow := checkURLs(ctx, m, opt, add)
	checkWeb(b, allow, add)
	return m
}

// checkURLs applies the SSRF guard to every URL of the manifest and
// returns the allowlist's origins that passed it.
func checkURLs(ctx context.Context, m *Manifest, opt Options, add func(Finding)) origins {
	r := opt.Resolver
	if r == nil && !opt.NoResolve {
		r = timeoutResolver{net.DefaultResolver, 3 * time.Second}
	}
	if opt.NoResolve {
		r = nil
	}
	guard := func(ptr, raw string) bool {
		err := netguard.CheckURL(ctx, raw, r)
		if err == nil {
			return true
		}
		f := Finding{Rule: "url.blocked", Path: ManifestName + ptr, Severity: Error, Message: err.Error()}
		switch {
		case errors.Is(err, netguard.ErrScheme):
			f.Rule = "url.scheme"
		case errors.Is(err, netguard.ErrMalformed), errors.Is(err, netguard.ErrHost):
			f.Rule = "url.host"
		case errors.Is(err, netguard.ErrUnresolvable) && opt.Strict:
			f.Rule = "url.unresolvable"
			f.Message += "; its addresses cannot be checked, and the app's connections are made by the browser, where nothing checks them again: the gate refuses it"
		case errors.Is(err, netguard.ErrUnresolvable):
			f.Rule, f.Severity = "url.unresolvable", Warning
			f.Message += "; its addresses could not be checked here, and the gate (taosagent app submit) refuses a host it cannot resolve"
			add(f)
			return true
		}
		add(f)
		return false
	}
	if m.Homepage != "" {
		guard("#/homepage", m.Homepage)
	}
	allow := origins{}
	for i, raw := range m.NetworkAllowlist {
		ptr := fmt.Sprintf("#/network_allowlist/%d", i)
		u, err := url.Parse(raw)
		if err == nil && (u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "") {
			add(Finding{Rule: "url.not-origin", Path: ManifestName + ptr, Severity: Error,
				Message: fmt.Sprintf("%q is not an origin; list scheme and host only, such as https://api.example.com", raw)})
			continue
		}
		if guard(ptr, raw) && u != nil {
			allow["https://"+strings.ToLower(u.Host)] = true
		}
	}
	if len(m.NetworkAllowlist) > 0 && !m.has("network") {
		add(Finding{Rule: "manifest.capability", Path: ManifestName + "#/network_allowlist", Severity: Error,
			Message: "a network allowlist needs the network capability"})
	}
	if m.has("network") && len(m.NetworkAllowlist) == 0 {
		add(Finding{Rule: "manifest.capability", Path: ManifestName + "#/capabilities", Severity: Warning,
			Message: "the network capability without an allowlist reaches nothing"})
	}
	return allow
}

// diff reports what the new version asks for that the old did not.
func diff(old, m *Manifest, add func(Finding)) {
	if old.ID != m.ID {
		add(Finding{Rule: "diff.id-changed", Path: ManifestName + "#/id", Severity: Error,
			Message: fmt.Sprintf("id changed from %s to %s; an update keeps its id", old.ID, m.ID)})
	}
	if compareVersions(m.Version, old.Version) <= 0 {
		add(Finding{Rule: "diff.version", Path: ManifestName + "#/version", Severity: Error,
			Message: fmt.Sprintf("version %s is not newer than %s", m.Version, old.Version)})
	}
	added := func(rule, ptr, what string, before, after []string) {
		had := map[string]bool{}
		for _, x := range before {
			had[strings.ToLower(x)] = true
		}
		for _, x := range after {
			if !had[strings.ToLower(x)] {
				add(Finding{Rule: rule, Path: ManifestName + ptr, Severity: Warning,
					Message: fmt.Sprintf("%s %s added since %s", what, x, old.Version)})
			}
		}
	}
	added("diff.capability-added", "#/capabilities", "capability", old.Capabilities, m.Capabilities)
	added("diff.host-added", "#/network_allowlist", "host", old.NetworkAllowlist, m.NetworkAllowlist)
}

type timeoutResolver struct {
	r       *net.Resolver
	timeout time.Duration
}

func (t timeoutResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	return t.r.LookupIPAddr(ctx, host)
}

// Text renders the report for a terminal: one line per finding, then a verdict.
func (r *Report) Text() string {
	var b bytes.Buffer
	for _, f := range r.Findings {
		p := f.Path
		if p == "" {
			p = "-"
		}
		fmt.Fprintf(&b, "%-7s %-26s %s: %s\n", f.Severity, f.Rule, p, f.Message)
	}
	errs := 0
	for _, f := range r.Findings {
		if f.Severity == Error {
			errs++
		}
	}
	verdict := "PASS"
	if !r.OK {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "%s %s: %d error(s), %d finding(s)", verdict, r.Source, errs, len(r.Findings))
	if r.SHA256 != "" {
		fmt.Fprintf(&b, ", sha256 %s", r.SHA256)
	}
	b.WriteString("\n")
	return b.String()
}
