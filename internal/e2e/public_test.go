package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/taosagent/taosagent/internal/testenv"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "taosagent test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return certFile, keyFile, pool
}

// Reachable from a phone: a second listener with TLS serves the panel and
// the API (the session cookie is then Secure); plain HTTP on an address
// other machines reach is refused at start unless the operator says so.
func TestThePanelOverTLSAndNoSilentExposure(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--listen", "0.0.0.0:0"},
		{"--public-listen", "127.0.0.1:0"},
		{"--public-listen", "127.0.0.1:0", "--tls-cert", "x.pem"},
	} {
		cmd := exec.Command(binary, append([]string{"serve", "--home", t.TempDir()}, args...)...)
		cmd.Env = append(os.Environ(), "TAOSAGENT_OPENCODE="+testenv.Opencode(t))
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "--tls-") {
			t.Errorf("serve %v: %v\n%s", args, err, out)
		}
	}

	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	d := startIn(t, "", nil, "--public-listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile)
	m := regexp.MustCompile(`also serving the panel and the API on (https://\S+) \(TLS\)`).FindStringSubmatch(d.log.String())
	if m == nil {
		t.Fatalf("no public address in the log:\n%s", d.log)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(m[1] + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("the panel over TLS: %d", resp.StatusCode)
	}
	resp, err = c.Post(m[1]+"/panel/login", "application/json", strings.NewReader(`{"token":"`+d.c.Token+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cs := resp.Cookies(); resp.StatusCode != 200 || len(cs) != 1 || !cs[0].Secure || !cs[0].HttpOnly {
		t.Fatalf("sign-in over TLS: %d %+v", resp.StatusCode, resp.Cookies())
	}
	// Plain HTTP to the TLS port is not served.
	resp, err = http.Get("http" + strings.TrimPrefix(m[1], "https") + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP was served on the TLS listener")
		}
	}
}
