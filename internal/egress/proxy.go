package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/taosagent/taosagent/internal/netguard"
)

// Principal is who is calling: an agent ("agent", its name), an agent's
// MCP server ("mcp", "agent/server"), a build ("build", the app).
type Principal struct {
	Kind string
	Name string
}

func (p Principal) String() string { return p.Kind + ":" + p.Name }

type principalKey struct{}

// WithPrincipal returns ctx carrying p: what the door a request came
// through sets.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalOf is the principal ctx carries.
func PrincipalOf(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Decision is one connection asked for, as the principal's events record
// it.
type Decision struct {
	Principal Principal
	Method    string // CONNECT, or the method of a plain http request
	Host      string // as asked for
	Port      int
	Address   string // the address dialled, when one was
	Allowed   bool
	Reason    string // why it was refused
}

// Proxy is an HTTP forward proxy, CONNECT for https and absolute-form
// requests for http, that carries a principal's connections where its
// policy allows, and refuses the rest with 403. The principal comes from
// the request's context (WithPrincipal); a request without one is
// refused. It resolves each name itself and dials the address it judged,
// so a name that resolves elsewhere later (DNS rebinding) gains nothing.
type Proxy struct {
	// Policy returns the principal's policy now.
	Policy func(ctx context.Context, p Principal) (Policy, error)
	// Record hears every decision, allowed or refused.
	Record func(Decision)
	// Resolver looks names up (default net.DefaultResolver).
	Resolver interface {
		LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	}
	// DialTimeout bounds connecting (default 30 s).
	DialTimeout time.Duration

	once      sync.Once
	transport *http.Transport
}

// IsProxyRequest reports whether r is for a proxy (CONNECT, or a request
// with an absolute URL) rather than for a route of the server.
func IsProxyRequest(r *http.Request) bool {
	return r.Method == http.MethodConnect || r.URL.IsAbs()
}

func (x *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x.once.Do(func() {
		// No connection is kept: one dialled under one principal's policy
		// must never carry another's request.
		x.transport = &http.Transport{Proxy: nil, DialContext: x.dialChecked, DisableKeepAlives: true,
			ResponseHeaderTimeout: 5 * time.Minute}
	})
	p, ok := PrincipalOf(r.Context())
	if !ok {
		http.Error(w, "taosagent egress: no principal", http.StatusForbidden)
		return
	}
	host, port := r.URL.Hostname(), r.URL.Port()
	if r.Method == http.MethodConnect {
		host, port, _ = net.SplitHostPort(r.Host)
	} else if r.URL.Scheme != "http" {
		http.Error(w, "taosagent egress: only http:// requests and CONNECT", http.StatusBadRequest)
		return
	}
	if port == "" {
		port = "80"
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 || n > 65535 || host == "" {
		http.Error(w, "taosagent egress: bad destination", http.StatusBadRequest)
		return
	}
	d := Decision{Principal: p, Method: r.Method, Host: host, Port: n}
	pol, err := x.Policy(r.Context(), p)
	pol = pol.Normalized()
	if err == nil {
		err = pol.allowsName(host)
	}
	if err != nil {
		x.refuse(w, &d, err)
		return
	}
	// The dial judges its addresses by the policy read here, once, and
	// tells the decision the address it dialled.
	ctx := context.WithValue(r.Context(), requestKey{}, &request{d: &d, pol: pol})
	if r.Method == http.MethodConnect {
		x.tunnel(ctx, w, &d)
		return
	}
	out := r.Clone(ctx)
	out.RequestURI = ""
	out.Header.Del("Proxy-Authorization")
	out.Header.Del("Proxy-Connection")
	resp, err := x.transport.RoundTrip(out)
	if err != nil {
		var re refusal
		if errors.As(err, &re) {
			x.refuse(w, &d, re.err)
			return
		}
		x.record(&d, true)
		http.Error(w, "taosagent egress: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	x.record(&d, true)
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(flushWriter{w}, resp.Body)
}

// Dial connects to addr ("host:port") for p, where p's policy allows, as
// a CONNECT through the proxy would: the name judged, resolved by the
// proxy and each address judged, the decision recorded. The daemon dials
// this way for an agent (a remote MCP server it is given), so that what
// the agent reaches through the daemon obeys the same policy.
func (x *Proxy) Dial(ctx context.Context, p Principal, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	n, _ := strconv.Atoi(port)
	d := Decision{Principal: p, Method: http.MethodConnect, Host: host, Port: n}
	pol, err := x.Policy(ctx, p)
	pol = pol.Normalized()
	if err == nil {
		err = pol.allowsName(host)
	}
	if err == nil {
		var c net.Conn
		c, err = x.dialChecked(context.WithValue(ctx, requestKey{}, &request{d: &d, pol: pol}), network, addr)
		var re refusal
		if !errors.As(err, &re) {
			x.record(&d, true)
			return c, err
		}
		err = re.err
	}
	d.Reason = err.Error()
	x.record(&d, false)
	return nil, fmt.Errorf("taosagent egress: refused: %w", err)
}

// tunnel connects d and joins the client's connection to it.
func (x *Proxy) tunnel(ctx context.Context, w http.ResponseWriter, d *Decision) {
	up, err := x.dialChecked(ctx, "tcp", net.JoinHostPort(d.Host, strconv.Itoa(d.Port)))
	if err != nil {
		var re refusal
		if errors.As(err, &re) {
			x.refuse(w, d, re.err)
			return
		}
		x.record(d, true)
		http.Error(w, "taosagent egress: "+err.Error(), http.StatusBadGateway)
		return
	}
	x.record(d, true)
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		up.Close()
		return
	}
	conn, buf, err := rc.Hijack()
	if err != nil {
		up.Close()
		return
	}
	go func() {
		if n := buf.Reader.Buffered(); n > 0 {
			b, _ := buf.Reader.Peek(n)
			up.Write(b)
		}
		io.Copy(up, conn)
		if c, ok := up.(*net.TCPConn); ok {
			c.CloseWrite()
		}
	}()
	io.Copy(conn, up)
	conn.Close()
	up.Close()
}

// request is what the dial of a request needs: its decision and the
// principal's policy, normalized.
type request struct {
	d   *Decision
	pol Policy
}

type requestKey struct{}

// refusal is a dial the policy refused (not a network failure).
type refusal struct{ err error }

func (r refusal) Error() string { return r.err.Error() }

// dialChecked resolves addr's host, judges every address by the policy of
// the request ctx carries, and dials the first allowed one.
func (x *Proxy) dialChecked(ctx context.Context, network, addr string) (net.Conn, error) {
	req, ok := ctx.Value(requestKey{}).(*request)
	if !ok {
		return nil, refusal{ErrNone}
	}
	pol, d := req.pol, req.d
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if err := pol.allowsName(host); err != nil {
		return nil, refusal{err}
	}
	var ips []netip.Addr
	if ip, ok := netguard.ParseIP(host); ok {
		ips = []netip.Addr{ip}
	} else {
		var r interface {
			LookupNetIP(context.Context, string, string) ([]netip.Addr, error)
		} = net.DefaultResolver
		if x.Resolver != nil {
			r = x.Resolver
		}
		if ips, err = r.LookupNetIP(ctx, "ip", host); err != nil {
			return nil, fmt.Errorf("%s does not resolve", host)
		}
	}
	var refused error
	timeout := x.DialTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	for _, ip := range ips {
		if err := pol.allowsAddr(ip); err != nil {
			refused = err
			continue
		}
		a := net.JoinHostPort(ip.Unmap().String(), port)
		d.Address = a
		return (&net.Dialer{Timeout: timeout}).DialContext(ctx, network, a)
	}
	if refused == nil {
		refused = fmt.Errorf("%s has no address", host)
	}
	return nil, refusal{refused}
}

func (x *Proxy) refuse(w http.ResponseWriter, d *Decision, err error) {
	d.Reason = err.Error()
	x.record(d, false)
	http.Error(w, "taosagent egress: refused: "+strings.TrimSpace(d.Reason), http.StatusForbidden)
}

func (x *Proxy) record(d *Decision, allowed bool) {
	d.Allowed = allowed
	if x.Record != nil {
		x.Record(*d)
	}
}

// flushWriter flushes after every write: a streamed answer arrives as it
// comes.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	http.NewResponseController(f.w).Flush()
	return n, err
}
