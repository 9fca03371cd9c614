// Package egress decides where confined code may connect, and carries the
// connections it may make: one policy object, keyed by who is calling (a
// principal: an agent, an agent's MCP server, a build), and one forward
// proxy in the daemon that applies it. A confined instance has no route
// out of its network namespace; the proxy, reached through its door, is
// its only way to anything beyond the daemon.
package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/taosagent/taosagent/internal/netguard"
)

// Modes of a Policy.
const (
	// None: no connection at all. The default, and always the host
	// agent's.
	None = "none"
	// Public: any public address, never loopback, private, link-local,
	// cloud metadata, multicast or reserved (netguard).
	Public = "public"
	// Hosts: only the names (or IP literals) listed, wherever they are,
	// but never loopback, link-local, metadata, multicast or
	// unspecified. A private address is reached only when a person listed
	// its name: a NAS on the LAN, say.
	Hosts = "hosts"
)

// MaxHosts bounds a Policy's list.
const MaxHosts = 64

// Policy is where a principal may connect. The zero value is None.
type Policy struct {
	Mode string `json:"mode"`
	// Hosts are the allowed host names of mode Hosts: "example.com",
	// "*.example.com" (any name below it), or an IP literal.
	Hosts []string `json:"hosts,omitempty"`
}

// Normalized is p with its mode defaulted and its names lower-cased,
// without a trailing dot, sorted and unique.
func (p Policy) Normalized() Policy {
	if p.Mode == "" {
		p.Mode = None
	}
	var hs []string
	for _, h := range p.Hosts {
		hs = append(hs, strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), "."))
	}
	slices.Sort(hs)
	p.Hosts = slices.Compact(hs)
	return p
}

// Validate checks a normalized policy.
func (p Policy) Validate() error {
	switch p.Mode {
	case None, Public:
		if len(p.Hosts) > 0 {
			return fmt.Errorf("hosts are for mode %q only", Hosts)
		}
		return nil
	case Hosts:
	default:
		return fmt.Errorf("mode must be %q, %q or %q", None, Public, Hosts)
	}
	if len(p.Hosts) == 0 || len(p.Hosts) > MaxHosts {
		return fmt.Errorf("mode %q needs 1 to %d hosts", Hosts, MaxHosts)
	}
	for _, h := range p.Hosts {
		name := strings.TrimPrefix(h, "*.")
		if ip, ok := netguard.ParseIP(name); ok {
			if name != h {
				return fmt.Errorf("host %q: a wildcard takes a name, not an address", h)
			}
			if reason, bad := never(ip); bad {
				return fmt.Errorf("host %q is %s, which no agent reaches", h, reason)
			}
			continue
		}
		if !validName(name) {
			return fmt.Errorf("host %q is not a host name", h)
		}
		if name == "localhost" || strings.HasSuffix(name, ".localhost") {
			return fmt.Errorf("host %q is loopback, which no agent reaches", h)
		}
	}
	return nil
}

// Wider reports whether p allows a destination that q does not (both
// normalized): what a person must approve.
func (p Policy) Wider(q Policy) bool {
	switch {
	case p.Mode == None, q.Mode == Public:
		return false
	case p.Mode == Public:
		return true
	case q.Mode == None:
		return true
	}
	for _, h := range p.Hosts {
		if !slices.Contains(q.Hosts, h) {
			return true
		}
	}
	return false
}

// String is the policy as a person reads it.
func (p Policy) String() string {
	p = p.Normalized()
	if p.Mode == Hosts {
		return Hosts + ": " + strings.Join(p.Hosts, ", ")
	}
	return p.Mode
}

// Errors a refusal wraps.
var (
	ErrNone    = errors.New("the egress policy is none")
	ErrHost    = errors.New("host not in the egress policy")
	ErrAddress = errors.New("address not allowed")
)

// allowsName reports whether p (normalized) lets a connection to host,
// a name or an IP literal, be attempted; the address it resolves to is
// judged next (allowsAddr).
func (p Policy) allowsName(host string) error {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	switch p.Mode {
	case Public:
		return nil
	case Hosts:
		for _, h := range p.Hosts {
			if h == host {
				return nil
			}
			if suffix, ok := strings.CutPrefix(h, "*"); ok && strings.HasSuffix(host, suffix) {
				return nil
			}
		}
		return fmt.Errorf("%w: %s", ErrHost, host)
	}
	return ErrNone
}

// allowsAddr reports whether p lets a connection reach ip.
func (p Policy) allowsAddr(ip netip.Addr) error {
	ip = ip.Unmap()
	if p.Mode == Public {
		return netguard.Addr(ip)
	}
	if reason, bad := never(ip); bad {
		return fmt.Errorf("%w: %s is %s", ErrAddress, ip, reason)
	}
	return nil
}

// never reports the addresses no policy reaches: loopback (the daemon,
// and every local service of the box), link-local and cloud metadata,
// multicast, unspecified.
func never(ip netip.Addr) (string, bool) {
	ip = ip.Unmap()
	if reason, bad := netguard.Blocked(ip); bad {
		switch {
		case strings.HasPrefix(reason, "private"), strings.HasPrefix(reason, "shared address"), strings.HasPrefix(reason, "reserved"):
			return "", false
		}
		return reason, true
	}
	return "", false
}

func validName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
