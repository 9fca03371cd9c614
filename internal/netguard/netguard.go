// Package netguard decides whether a URL is safe for untrusted code to
// reach: https only, and a host that is — in every spelling and after DNS
// resolution — a public address, never loopback, private, link-local, cloud
// metadata, multicast, reserved or unspecified. It is the SSRF guard for
// anything taosagent fetches or lets an app fetch on someone else's word.
//
// A check at declaration time does not stop DNS rebinding: whatever
// connects later must check the address it actually dials (use Addr).
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Errors callers tell apart. Each returned error wraps one of them.
var (
	ErrMalformed    = errors.New("malformed URL")
	ErrScheme       = errors.New("scheme not allowed")
	ErrHost         = errors.New("host not allowed")
	ErrBlocked      = errors.New("address not allowed")
	ErrUnresolvable = errors.New("host does not resolve")
)

// Resolver looks host names up; *net.Resolver is one.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// CheckURL returns nil if raw is an https URL without credentials whose
// host is public. A literal IP, in any spelling inet_aton accepts (decimal,
// octal, hex, short forms) or in IPv6 with an embedded IPv4 address, is
// judged without DNS. A name is judged by its spelling, then resolved with
// r; every address it resolves to must be public. A nil r skips resolution
// (spelling only).
func CheckURL(ctx context.Context, raw string, r Resolver) error {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" {
		return fmt.Errorf("%w: %q", ErrMalformed, raw)
	}
	if u.Scheme != "https" {
		return fmt.Errorf("%w: %q uses %q; only https is allowed", ErrScheme, raw, u.Scheme)
	}
	if u.User != nil {
		return fmt.Errorf("%w: %q carries credentials", ErrHost, raw)
	}
	return CheckHost(ctx, u.Hostname(), r)
}

// CheckHost is CheckURL for a bare host name or IP literal. A leading "*."
// wildcard is allowed; the name under it is checked by spelling only, as
// the names it stands for cannot be listed (the connect-time check covers
// them).
func CheckHost(ctx context.Context, host string, r Resolver) error {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if h, ok := strings.CutPrefix(host, "*."); ok {
		host, r = h, nil
	}
	if host == "" {
		return fmt.Errorf("%w: empty host", ErrMalformed)
	}
	if ip, ok := ParseIP(host); ok {
		if reason, bad := Blocked(ip); bad {
			return fmt.Errorf("%w: %s is %s", ErrBlocked, host, reason)
		}
		return nil
	}
	if err := checkName(host); err != nil {
		return err
	}
	if r == nil {
		return nil
	}
	addrs, err := r.LookupIPAddr(ctx, host)
	if err != nil || len(addrs) == 0 {
		return fmt.Errorf("%w: %s", ErrUnresolvable, host)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			return fmt.Errorf("%w: %s resolves to an unreadable address", ErrBlocked, host)
		}
		if reason, bad := Blocked(ip); bad {
			return fmt.Errorf("%w: %s resolves to %s, which is %s", ErrBlocked, host, ip.Unmap(), reason)
		}
	}
	return nil
}

// checkName rejects names that only mean something on a local network.
func checkName(host string) error {
	for _, r := range host {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return fmt.Errorf("%w: %q is not a valid DNS name (use punycode for international names)", ErrHost, host)
		}
	}
	if !strings.Contains(host, ".") {
		return fmt.Errorf("%w: %q is a single-label name, which only resolves locally", ErrHost, host)
	}
	for _, suffix := range []string{"localhost", "local", "internal", "lan", "home.arpa", "localdomain", "intranet", "corp"} {
		if host == suffix || strings.HasSuffix(host, "."+suffix) {
			return fmt.Errorf("%w: %q is a local name (.%s)", ErrHost, host, suffix)
		}
	}
	return nil
}

// Addr returns an error if ip must not be dialled: the check for the
// address a connection actually uses.
func Addr(ip netip.Addr) error {
	if reason, bad := Blocked(ip); bad {
		return fmt.Errorf("%w: %s is %s", ErrBlocked, ip, reason)
	}
	return nil
}

type rangeRule struct {
	prefix netip.Prefix
	reason string
}

func mustPrefixes(reason string, ps ...string) []rangeRule {
	out := make([]rangeRule, len(ps))
	for i, p := range ps {
		out[i] = rangeRule{netip.MustParsePrefix(p), reason}
	}
	return out
}

// metadata lists the cloud metadata endpoints, named before the broader
// ranges that hold them so the reason is the precise one.
var metadata = mustPrefixes("a cloud metadata address",
	"169.254.169.254/32", "169.254.170.2/32", "169.254.169.123/32", "100.100.100.200/32",
	"192.0.0.192/32", "fd00:ec2::254/128", "fd00:ec2::23/128")

var rules = func() []rangeRule {
	var r []rangeRule
	r = append(r, metadata...)
	r = append(r, mustPrefixes("unspecified", "0.0.0.0/8", "::/128")...)
	r = append(r, mustPrefixes("loopback", "127.0.0.0/8", "::1/128")...)
	r = append(r, mustPrefixes("private", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")...)
	r = append(r, mustPrefixes("shared address space (carrier NAT)", "100.64.0.0/10")...)
	r = append(r, mustPrefixes("link-local", "169.254.0.0/16", "fe80::/10")...)
	r = append(r, mustPrefixes("multicast", "224.0.0.0/4", "ff00::/8")...)
	r = append(r, mustPrefixes("broadcast", "255.255.255.255/32")...)
	r = append(r, mustPrefixes("reserved",
		"::/96", "192.0.0.0/24", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "192.88.99.0/24",
		"198.18.0.0/15", "240.0.0.0/4", "100::/64", "2001:db8::/32", "fec0::/10", "3fff::/20", "5f00::/16")...)
	return r
}()

// embedders are IPv6 ranges that carry an IPv4 address, which is judged
// in its place: IPv4-mapped and -compatible, NAT64, 6to4, Teredo.
var (
	mapped   = netip.MustParsePrefix("::ffff:0:0/96")
	compat   = netip.MustParsePrefix("::/96")
	nat64    = netip.MustParsePrefix("64:ff9b::/96")
	nat64l   = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFou = netip.MustParsePrefix("2002::/16")
	teredo   = netip.MustParsePrefix("2001::/32")
)

// Blocked reports whether ip is not a public unicast address, and why.
func Blocked(ip netip.Addr) (reason string, blocked bool) {
	if !ip.IsValid() {
		return "invalid", true
	}
	ip = ip.WithZone("")
	if ip.Is6() {
		b := ip.As16()
		var v4 [4]byte
		embedded := true
		switch {
		case mapped.Contains(ip), compat.Contains(ip), nat64.Contains(ip), nat64l.Contains(ip):
			copy(v4[:], b[12:16])
		case sixToFou.Contains(ip):
			copy(v4[:], b[2:6])
		case teredo.Contains(ip):
			for i := range v4 {
				v4[i] = b[12+i] ^ 0xff
			}
		default:
			embedded = false
		}
		if embedded && !(compat.Contains(ip) && (ip == netip.IPv6Unspecified() || ip == netip.IPv6Loopback())) {
			if reason, bad := Blocked(netip.AddrFrom4(v4)); bad {
				return reason + " (embedded in an IPv6 address)", true
			}
		}
	}
	for _, r := range rules {
		if r.prefix.Contains(ip) {
			return r.reason, true
		}
	}
	return "", false
}

// ParseIP reads host as an IP address in any spelling a resolver or a
// browser would accept: dotted IPv4 with decimal, octal (leading 0) or hex
// (0x) parts, the one-, two- and three-part short forms ("127.1",
// "2130706433"), and IPv6 (with or without brackets or zone). It reports
// false for anything that is not an IP literal.
func ParseIP(host string) (netip.Addr, bool) {
	h := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(host, "]"), "["), ".")
	if strings.Contains(h, ":") {
		if i := strings.IndexByte(h, '%'); i >= 0 {
			h = h[:i]
		}
		a, err := netip.ParseAddr(h)
		return a, err == nil
	}
	parts := strings.Split(h, ".")
	if len(parts) == 0 || len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		v, ok := parseIPv4Part(p)
		if !ok {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	// Every part but the last is one byte; the last fills what is left.
	var n uint64
	for i, v := range vals[:len(vals)-1] {
		if v > 0xff {
			return netip.Addr{}, false
		}
		n |= v << (8 * (3 - i))
	}
	last := vals[len(vals)-1]
	if last >= 1<<(8*(5-len(vals))) {
		return netip.Addr{}, false
	}
	n |= last
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

func parseIPv4Part(p string) (uint64, bool) {
	if p == "" {
		return 0, false
	}
	base := 10
	switch {
	case len(p) > 1 && (p[:2] == "0x" || p[:2] == "0X"):
		base, p = 16, p[2:]
		if p == "" {
			return 0, true // "0x" alone is zero to inet_aton
		}
	case len(p) > 1 && p[0] == '0':
		base, p = 8, p[1:]
	}
	v, err := strconv.ParseUint(p, base, 64)
	if err != nil || v > 0xffffffff {
		return 0, false
	}
	return v, true
}
