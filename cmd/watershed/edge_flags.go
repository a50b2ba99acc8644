package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/watershed-io/watershed/edge"
	"github.com/watershed-io/watershed/internal/serve"
)

// minSecretLen is the shortest device secret `watershed ingest` and
// `watershed token` take without --insecure-short-secret: 256 bits.
const minSecretLen = 32

// Defaults of the edge's admission flags that differ from the edge
// package's (which leaves the byte limit off).
const (
	defaultDeviceByteRate    = 256 << 10
	defaultDeviceByteBurst   = 2 << 20
	defaultMaxConnsPerClient = 256
)

// edgeFlags are the ingest edge's admission-control and token flags.
type edgeFlags struct {
	acceptV1            bool
	revocationFile      string
	deviceInFlight      int
	unauthPerClient     int
	connsPerClient      int
	trustedProxies      string
	bodyTimeout         time.Duration
	minBodyRate         int64
	deviceByteRate      float64
	deviceByteBurst     int64
	insecureShortSecret bool
	proxyHeader         string
}

func (f *edgeFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.acceptV1, "accept-v1-tokens", envOr("WATERSHED_ACCEPT_V1_TOKENS", "true") == "true", "accept version 1 device tokens, which never expire; counted in watershed_edge_v1_tokens_total (env WATERSHED_ACCEPT_V1_TOKENS)")
	fs.StringVar(&f.revocationFile, "revocation-file", envOr("WATERSHED_REVOCATION_FILE", ""), "file of revoked devices, a line each: DEVICE_ID, or DEVICE_ID GENERATION to refuse tokens of lower generations; read again on change and on SIGHUP (env WATERSHED_REVOCATION_FILE)")
	fs.IntVar(&f.deviceInFlight, "max-device-inflight", envInt("WATERSHED_MAX_DEVICE_INFLIGHT", edge.DefaultMaxDeviceInFlight), "packages of one device handled at once; more are answered 429 (env WATERSHED_MAX_DEVICE_INFLIGHT)")
	fs.IntVar(&f.unauthPerClient, "max-unauthenticated-per-client", envInt("WATERSHED_MAX_UNAUTHENTICATED_PER_CLIENT", edge.DefaultMaxUnauthenticatedPerClient), "requests of one client address (IPv6: its /64) not yet authenticated; more are answered 429 (env WATERSHED_MAX_UNAUTHENTICATED_PER_CLIENT)")
	fs.IntVar(&f.connsPerClient, "max-conns-per-client", envInt("WATERSHED_MAX_CONNS_PER_CLIENT", defaultMaxConnsPerClient), "open connections of one client address (IPv6: its /64); more are closed at once; trusted proxies are exempt (env WATERSHED_MAX_CONNS_PER_CLIENT)")
	fs.StringVar(&f.trustedProxies, "trusted-proxies", envOr("WATERSHED_TRUSTED_PROXIES", ""), "comma-separated CIDRs of proxies whose --proxy-header names the client address; empty: no header is believed (env WATERSHED_TRUSTED_PROXIES)")
	fs.StringVar(&f.proxyHeader, "proxy-header", envOr("WATERSHED_PROXY_HEADER", edge.HeaderXForwardedFor), "the header the trusted proxies write the client address to: X-Forwarded-For or Forwarded; the other is never read (env WATERSHED_PROXY_HEADER)")
	fs.DurationVar(&f.bodyTimeout, "body-timeout", envDuration("WATERSHED_BODY_TIMEOUT", edge.DefaultBodyTimeout), "time for a request's package header, and base of its body's deadline (env WATERSHED_BODY_TIMEOUT)")
	fs.Int64Var(&f.minBodyRate, "min-body-rate", int64(envInt("WATERSHED_MIN_BODY_RATE", edge.DefaultMinBodyRate)), "slowest body transfer allowed, bytes a second: a body's deadline is --body-timeout plus its length at this rate (env WATERSHED_MIN_BODY_RATE)")
	fs.Float64Var(&f.deviceByteRate, "device-byte-rate", float64(envInt("WATERSHED_DEVICE_BYTE_RATE", defaultDeviceByteRate)), "package bytes a second each device may send, sustained; more are answered 429 with Retry-After; 0 turns the limit off (env WATERSHED_DEVICE_BYTE_RATE)")
	fs.Int64Var(&f.deviceByteBurst, "device-byte-burst", int64(envInt("WATERSHED_DEVICE_BYTE_BURST", defaultDeviceByteBurst)), fmt.Sprintf("package bytes a device may send at once, at least %d (env WATERSHED_DEVICE_BYTE_BURST)", edge.MaxPackageBytes))
	fs.BoolVar(&f.insecureShortSecret, "insecure-short-secret", false, fmt.Sprintf("accept a device secret shorter than %d bytes", minSecretLen))
}

// envDuration is envOr for durations; a malformed value is left to the
// flag parse, as envInt does.
func envDuration(name string, def time.Duration) time.Duration {
	if v, ok := os.LookupEnv(name); ok {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

// checkSecret refuses a secret (named by what, never printed) shorter than
// minSecretLen unless --insecure-short-secret was given.
func (f *edgeFlags) checkSecret(what string, secret string) error {
	if len(secret) < minSecretLen && !f.insecureShortSecret {
		return fmt.Errorf("the %s is %d bytes, under %d: use a longer one (e.g. `openssl rand -base64 48`), or give --insecure-short-secret", what, len(secret), minSecretLen)
	}
	return nil
}

// checkSecrets checks the device secret and, when set, the previous one.
func (f *edgeFlags) checkSecrets(secret, previous string) error {
	if err := f.checkSecret("device secret", secret); err != nil {
		return err
	}
	if previous != "" {
		return f.checkSecret("previous device secret", previous)
	}
	return nil
}

// reloadOnHangup calls reload (which logs its own errors) on every SIGHUP
// until the returned stop is called.
func reloadOnHangup(reload func() error) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				_ = reload()
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}

// proxies parses --trusted-proxies.
func (f *edgeFlags) proxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(f.trustedProxies, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !strings.Contains(s, "/") { // one address
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("--trusted-proxies: %w", err)
			}
			s += "/" + strconv.Itoa(a.BitLen())
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxies: %w", err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// apply sets the edge's and its server's options from the flags.
func (f *edgeFlags) apply(eo *edge.Options, so *serve.Options) error {
	proxies, err := f.proxies()
	if err != nil {
		return err
	}
	if f.deviceInFlight < 1 || f.unauthPerClient < 1 || f.connsPerClient < 1 {
		return errors.New("--max-device-inflight, --max-unauthenticated-per-client and --max-conns-per-client must be at least 1")
	}
	if f.bodyTimeout <= 0 || f.minBodyRate <= 0 {
		return errors.New("--body-timeout and --min-body-rate must be positive")
	}
	if f.deviceByteRate < 0 || (f.deviceByteRate > 0 && f.deviceByteBurst < edge.MaxPackageBytes) {
		return fmt.Errorf("--device-byte-rate must be at least 0, and --device-byte-burst at least %d with a rate", edge.MaxPackageBytes)
	}
	eo.RefuseV1Tokens = !f.acceptV1
	eo.RevocationFile = f.revocationFile
	eo.MaxDeviceInFlight = f.deviceInFlight
	eo.MaxUnauthenticatedPerClient = f.unauthPerClient
	if f.proxyHeader != edge.HeaderXForwardedFor && f.proxyHeader != edge.HeaderForwarded {
		return fmt.Errorf("--proxy-header %q: want %s or %s", f.proxyHeader, edge.HeaderXForwardedFor, edge.HeaderForwarded)
	}
	eo.TrustedProxies = proxies
	eo.ProxyHeader = f.proxyHeader
	eo.BodyTimeout = f.bodyTimeout
	eo.MinBodyRate = f.minBodyRate
	eo.DeviceByteRate = f.deviceByteRate
	eo.DeviceByteBurst = f.deviceByteBurst
	so.MaxConnsPerClient = f.connsPerClient
	so.TrustedProxies = proxies
	so.DeferAdmission = edge.DefersAdmission
	return nil
}
