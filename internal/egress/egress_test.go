package egress

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
)

func TestPoliciesAreValidatedAndCompared(t *testing.T) {
	for _, c := range []struct {
		p  Policy
		ok bool
	}{
		{Policy{}, true},
		{Policy{Mode: Public}, true},
		{Policy{Mode: Hosts, Hosts: []string{"Example.COM.", "*.example.org", "192.168.1.5"}}, true},
		{Policy{Mode: "everywhere"}, false},
		{Policy{Mode: Hosts}, false},
		{Policy{Mode: Public, Hosts: []string{"a.com"}}, false},
		{Policy{Mode: Hosts, Hosts: []string{"127.0.0.1"}}, false},
		{Policy{Mode: Hosts, Hosts: []string{"169.254.169.254"}}, false},
		{Policy{Mode: Hosts, Hosts: []string{"localhost"}}, false},
		{Policy{Mode: Hosts, Hosts: []string{"a b.com"}}, false},
		{Policy{Mode: Hosts, Hosts: []string{"*.10.0.0.1"}}, false},
	} {
		if err := c.p.Normalized().Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: %v (want ok %v)", c.p, err, c.ok)
		}
	}
	none, pub := Policy{Mode: None}, Policy{Mode: Public}
	a := Policy{Mode: Hosts, Hosts: []string{"a.com"}}
	ab := Policy{Mode: Hosts, Hosts: []string{"a.com", "b.com"}}
	for _, c := range []struct {
		p, q  Policy
		wider bool
	}{{pub, none, true}, {a, none, true}, {ab, a, true}, {a, ab, false}, {none, pub, false}, {pub, pub, false}, {a, pub, false}, {pub, a, true}} {
		if c.p.Wider(c.q) != c.wider {
			t.Errorf("%v wider than %v: want %v", c.p, c.q, c.wider)
		}
	}
}

type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// The proxy carries what the caller's policy allows, judges the address a
// name resolves to (not only the name), and records every decision.
func TestTheProxyAppliesThePrincipalsPolicy(t *testing.T) {
	var hits int
	var mu sync.Mutex
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		io.WriteString(w, "upstream "+r.URL.Path)
	}))
	defer up.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(up.URL, "http://"))
	policies := map[string]Policy{
		"none":  {Mode: None},
		"pub":   {Mode: Public},
		"named": {Mode: Hosts, Hosts: []string{"svc.test", "rebind.test"}},
	}
	var got []Decision
	x := &Proxy{
		Policy: func(_ context.Context, p Principal) (Policy, error) { return policies[p.Name], nil },
		Record: func(d Decision) { mu.Lock(); got = append(got, d); mu.Unlock() },
		// svc.test is the test server (loopback: what a private LAN name
		// stands for here); rebind.test a name that resolves to loopback.
		Resolver: fakeResolver{"svc.test": {netip.MustParseAddr("127.0.0.1")}, "rebind.test": {netip.MustParseAddr("127.0.0.1")}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.Header.Get("X-Principal")
		r.Header.Del("X-Principal")
		x.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), Principal{Kind: "agent", Name: name})))
	}))
	defer srv.Close()
	get := func(principal, target string) (int, string) {
		t.Helper()
		pu, _ := url.Parse(srv.URL)
		c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), ProxyConnectHeader: http.Header{"X-Principal": {principal}}}}
		req, _ := http.NewRequest("GET", target, nil)
		req.Header.Set("X-Principal", principal)
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct{ who, url, want string }{
		{"none", "http://svc.test:" + port + "/a", "403"},
		{"pub", "http://127.0.0.1:" + port + "/a", "403"},
		{"pub", "http://svc.test:" + port + "/a", "403"},      // resolves to loopback
		{"named", "http://rebind.test:" + port + "/a", "403"}, // named, but loopback
		{"named", "http://other.test:" + port + "/a", "403"},  // not named
		{"named", "http://169.254.169.254/latest/", "403"},    // never
		{"nobody", "http://svc.test:" + port + "/a", "403"},   // no policy: none
	} {
		code, body := get(c.who, c.url)
		if code != 403 || !strings.Contains(body, "refused") {
			t.Errorf("%s → %s: %d %s", c.who, c.url, code, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if hits != 0 {
		t.Fatalf("the upstream was reached %d times", hits)
	}
	if len(got) != 7 {
		t.Fatalf("decisions recorded: %d %+v", len(got), got)
	}
	for _, d := range got {
		if d.Allowed || d.Reason == "" || d.Host == "" || d.Port == 0 {
			t.Errorf("decision %+v", d)
		}
	}
}

// A CONNECT to a name the policy lists, which resolves to loopback, is
// refused with 403 before anything is dialled. (An allowed CONNECT is in
// the e2e tests, on a test network.)
func TestTheProxyJudgesConnectByAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			io.Copy(c, c)
			c.Close()
		}
	}()
	var got []Decision
	x := &Proxy{
		Policy: func(context.Context, Principal) (Policy, error) {
			return Policy{Mode: Hosts, Hosts: []string{"echo.test"}}, nil
		},
		Record:   func(d Decision) { got = append(got, d) },
		Resolver: fakeResolver{"echo.test": {netip.MustParseAddr("127.0.0.1")}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), Principal{Kind: "agent", Name: "a"})))
	}))
	defer srv.Close()
	c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	io.WriteString(c, "CONNECT echo.test:"+port+" HTTP/1.1\r\nHost: echo.test:"+port+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 403 || len(got) != 1 || got[0].Allowed || !strings.Contains(got[0].Reason, "loopback") {
		t.Fatalf("CONNECT to a loopback name: %d %+v", resp.StatusCode, got)
	}
}

// ownAddress is an address of this machine other than loopback, or
// skips: traffic in this test goes to this machine only.
func ownAddress(t *testing.T) netip.Addr {
	t.Helper()
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
				return ip.Unmap()
			}
		}
	}
	t.Skip("this machine has no address but loopback")
	return netip.Addr{}
}

// What the policy allows is carried: a plain http request, and a CONNECT
// tunnel both ways, to this machine's own address by a name the policy
// lists.
func TestTheProxyCarriesWhatThePolicyAllows(t *testing.T) {
	own := ownAddress(t)
	ln, err := net.Listen("tcp", net.JoinHostPort(own.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	page := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "page "+r.URL.Path)
	})}
	go page.Serve(ln)
	defer page.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	var got []Decision
	var mu sync.Mutex
	x := &Proxy{
		Policy: func(context.Context, Principal) (Policy, error) {
			return Policy{Mode: Hosts, Hosts: []string{"lan.test"}}, nil
		},
		Record:   func(d Decision) { mu.Lock(); got = append(got, d); mu.Unlock() },
		Resolver: fakeResolver{"lan.test": {own}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), Principal{Kind: "agent", Name: "a"})))
	}))
	defer srv.Close()
	pu, _ := url.Parse(srv.URL)

	// Plain http, absolute-form.
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	resp, err := c.Get("http://lan.test:" + port + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "page /plain" {
		t.Fatalf("http through the proxy: %d %q", resp.StatusCode, b)
	}
	// CONNECT, then a request of its own through the tunnel.
	conn, err := net.Dial("tcp", pu.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "CONNECT lan.test:"+port+" HTTP/1.1\r\nHost: lan.test:"+port+"\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	io.WriteString(conn, "GET /tunnel HTTP/1.1\r\nHost: lan.test\r\nConnection: close\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	if string(b) != "page /tunnel" {
		t.Fatalf("through the tunnel: %q", b)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || !got[0].Allowed || !got[1].Allowed || got[1].Method != "CONNECT" || got[1].Address != net.JoinHostPort(own.String(), port) {
		t.Fatalf("decisions: %+v", got)
	}
}
