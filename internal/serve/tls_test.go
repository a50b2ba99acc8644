package serve_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/internal/serve"
	"github.com/watershed-io/watershed/internal/testcert"
)

// tlsClient trusts pool and speaks at least TLS 1.2.
func tlsClient(pool *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: pool, DisableKeepAlives: true}}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	pair := testcert.Write(t, dir, "server")
	mux := http.NewServeMux()
	serve.Health(mux, func() error { return nil })
	s, err := serve.Listen(mux, serve.Options{Addr: "127.0.0.1:0", TLSCertFile: pair.CertFile, TLSKeyFile: pair.KeyFile, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.URL(), "https://") {
		t.Fatalf("URL %q, want https", s.URL())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	// The served certificate, by the handshake's peer certificate.
	served := func(cfg *tls.Config) (string, error) {
		resp, err := tlsClient(cfg).Get(s.URL() + "/healthz")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "ok\n" {
			t.Errorf("healthz over TLS = %d %q", resp.StatusCode, b)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.String(), nil
	}
	trusting := &tls.Config{RootCAs: pair.Pool}
	got, err := served(trusting)
	if err != nil {
		t.Fatalf("TLS client trusting the certificate: %v", err)
	}
	if got != pair.Cert.SerialNumber.String() {
		t.Errorf("served serial %s, want %s", got, pair.Cert.SerialNumber)
	}
	if _, err := served(&tls.Config{}); err == nil {
		t.Error("a client that does not trust the self-signed certificate connected")
	}
	if _, err := served(&tls.Config{RootCAs: pair.Pool, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("a TLS 1.1 client connected")
	}
	// Plain HTTP gets no HTTP answer.
	if resp, err := http.Get("http://" + s.Addr() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP answered 200 on a TLS server")
		}
	}

	// Rotation: new files in place are served without a restart.
	next := testcert.Write(t, dir, "server")
	trustingBoth := &tls.Config{RootCAs: pair.Pool}
	trustingBoth.RootCAs.AddCert(next.Cert)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := served(trustingBoth)
		if err != nil {
			t.Fatal(err)
		}
		if got == next.Cert.SerialNumber.String() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the replaced certificate was not served within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestTLSNeedsCertAndKey(t *testing.T) {
	dir := t.TempDir()
	pair := testcert.Write(t, dir, "server")
	for name, o := range map[string]serve.Options{
		"cert only":   {TLSCertFile: pair.CertFile},
		"key only":    {TLSKeyFile: pair.KeyFile},
		"missing key": {TLSCertFile: pair.CertFile, TLSKeyFile: dir + "/nope.key"},
		"swapped":     {TLSCertFile: pair.KeyFile, TLSKeyFile: pair.CertFile},
	} {
		o.Addr = "127.0.0.1:0"
		if s, err := serve.Listen(http.NewServeMux(), o); err == nil {
			_ = s
			t.Errorf("%s: Listen succeeded", name)
		}
	}
}
