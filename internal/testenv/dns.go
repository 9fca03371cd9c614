package testenv

import (
	"context"
	"net"
)

// FakeDNS resolves host names from its table (name → IP); any other name
// does not resolve. It stands in for the system's resolver in tests.
type FakeDNS map[string]string

// LookupIPAddr answers from the table.
func (f FakeDNS) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	if ip, ok := f[host]; ok {
		return []net.IPAddr{{IP: net.ParseIP(ip)}}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}
