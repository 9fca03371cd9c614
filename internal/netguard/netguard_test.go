package netguard

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// fakeResolver answers from a table; unknown names do not resolve.
type fakeResolver map[string][]string

func (f fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	ips, ok := f[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []net.IPAddr
	for _, s := range ips {
		out = append(out, net.IPAddr{IP: net.ParseIP(s)})
	}
	return out, nil
}

var dns = fakeResolver{
	"api.example.com":     {"93.184.216.34"},
	"cdn.example.com":     {"93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"},
	"rebind.example.com":  {"93.184.216.34", "127.0.0.1"},
	"meta.example.com":    {"169.254.169.254"},
	"private.example.com": {"10.1.2.3"},
	"v6local.example.com": {"fd12:3456::1"},
	"mapped.example.com":  {"::ffff:192.168.1.1"},
}

func TestCheckURL(t *testing.T) {
	cases := []struct {
		url  string
		want error // nil: allowed
	}{
		{"https://api.example.com/v1", nil},
		{"https://cdn.example.com", nil},
		{"https://*.example.com", nil}, // wildcard: the base name is checked (spelling)
		{"https://93.184.216.34/", nil},
		{"https://[2606:2800:220:1:248:1893:25c8:1946]/", nil},

		{"http://api.example.com", ErrScheme},
		{"ftp://api.example.com", ErrScheme},
		{"javascript:alert(1)", ErrMalformed},
		{"//api.example.com", ErrScheme},
		{"https://user:pw@api.example.com", ErrHost},
		{"https://", ErrMalformed},
		{"not a url at all", ErrMalformed},

		{"https://localhost", ErrHost},
		{"https://app.localhost", ErrHost},
		{"https://printer.local", ErrHost},
		{"https://metadata.google.internal/computeMetadata/v1/", ErrHost},
		{"https://intranet", ErrHost},
		{"https://exa mple.com", ErrMalformed},

		{"https://127.0.0.1", ErrBlocked},
		{"https://127.1", ErrBlocked},
		{"https://2130706433", ErrBlocked},
		{"https://0x7f000001", ErrBlocked},
		{"https://0177.0.0.1", ErrBlocked},
		{"https://0x7f.0.0.1", ErrBlocked},
		{"https://017700000001", ErrBlocked},
		{"https://127.0.0.1.", ErrBlocked},
		{"https://0.0.0.0", ErrBlocked},
		{"https://0", ErrBlocked},
		{"https://10.0.0.1", ErrBlocked},
		{"https://172.16.5.4", ErrBlocked},
		{"https://192.168.1.1:8443", ErrBlocked},
		{"https://169.254.169.254/latest/meta-data/", ErrBlocked},
		{"https://100.100.100.200", ErrBlocked},
		{"https://100.64.0.1", ErrBlocked},
		{"https://224.0.0.1", ErrBlocked},
		{"https://255.255.255.255", ErrBlocked},
		{"https://[::1]", ErrBlocked},
		{"https://[::]", ErrBlocked},
		{"https://[::ffff:127.0.0.1]", ErrBlocked},
		{"https://[::ffff:7f00:1]", ErrBlocked},
		{"https://[::ffff:169.254.169.254]", ErrBlocked},
		{"https://[::127.0.0.1]", ErrBlocked},
		{"https://[64:ff9b::a9fe:a9fe]", ErrBlocked},
		{"https://[2002:7f00:1::]", ErrBlocked},
		{"https://[fe80::1%25eth0]", ErrBlocked},
		{"https://[fd00:ec2::254]", ErrBlocked},
		{"https://[fc00::1]", ErrBlocked},
		{"https://[ff02::1]", ErrBlocked},

		{"https://rebind.example.com", ErrBlocked},
		{"https://meta.example.com", ErrBlocked},
		{"https://private.example.com", ErrBlocked},
		{"https://v6local.example.com", ErrBlocked},
		{"https://mapped.example.com", ErrBlocked},
		{"https://nowhere.example.com", ErrUnresolvable},
	}
	for _, c := range cases {
		err := CheckURL(context.Background(), c.url, dns)
		if c.want == nil && err != nil {
			t.Errorf("%s: rejected: %v", c.url, err)
		}
		if c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.url, err, c.want)
		}
	}
}

func TestBlockedReasons(t *testing.T) {
	for ip, want := range map[string]string{
		"169.254.169.254":                      "a cloud metadata address",
		"127.0.0.2":                            "loopback",
		"10.9.9.9":                             "private",
		"169.254.1.1":                          "link-local",
		"239.1.1.1":                            "multicast",
		"0.0.0.0":                              "unspecified",
		"::ffff:10.0.0.1":                      "private (embedded in an IPv6 address)",
		"8.8.8.8":                              "",
		"2001:4860::8888":                      "",
		"2001:0:4136:e378:8000:63bf:80ff:fffe": "loopback (embedded in an IPv6 address)", // Teredo client 127.0.0.1
	} {
		got, _ := Blocked(netip.MustParseAddr(ip))
		if got != want {
			t.Errorf("Blocked(%s) = %q, want %q", ip, got, want)
		}
	}
}

func TestParseIP(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1": "127.0.0.1", "127.1": "127.0.0.1", "127.0.1": "127.0.0.1",
		"2130706433": "127.0.0.1", "0x7f000001": "127.0.0.1", "0177.0.0.01": "127.0.0.1",
		"0x7F.0x0.0.1": "127.0.0.1", "1.2.3.4.": "1.2.3.4", "[::1]": "::1", "fe80::1%eth0": "fe80::1",
	} {
		got, ok := ParseIP(in)
		if !ok || got.String() != want {
			t.Errorf("ParseIP(%q) = %v %v, want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{"example.com", "1.2.3.4.5", "256.1.1.1", "1.2.3.0x100", "4294967296", "08.1.1.1", "", "1..2", "0x"} {
		if got, ok := ParseIP(in); ok && in != "0x" {
			t.Errorf("ParseIP(%q) = %v, want not an IP", in, got)
		}
	}
}

// FuzzCheckURL: whatever the input, an accepted URL is https and its host,
// read as an IP by either this package or the standard library, is public.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{"https://api.example.com", "https://127.1", "https://[::ffff:7f00:1]", "https://0x7f.1", "http://x", "https://1.2.3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if CheckURL(context.Background(), raw, nil) != nil {
			return
		}
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.Scheme != "https" || u.User != nil {
			t.Fatalf("accepted %q: not a credential-free https URL", raw)
		}
		host := u.Hostname()
		if ip, err := netip.ParseAddr(host); err == nil {
			if reason, bad := Blocked(ip); bad {
				t.Fatalf("accepted %q: %s is %s", raw, ip, reason)
			}
		}
		if ip := net.ParseIP(host); ip != nil {
			a, _ := netip.AddrFromSlice(ip)
			if reason, bad := Blocked(a.Unmap()); bad {
				t.Fatalf("accepted %q: %s is %s", raw, ip, reason)
			}
		}
	})
}
