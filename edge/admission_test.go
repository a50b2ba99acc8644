package edge

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/internal/serve"
)

// loopbackDialer dials from 127.0.0.host, so that one test plays clients at
// many addresses (Linux routes all of 127/8 to the loopback device).
func loopbackDialer(host byte) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, host)}, Timeout: 5 * time.Second}
}

// servedFixture serves the fixture's edge as `watershed ingest` does: the
// edge's handler on a serve.Server with opts.
func servedFixture(t *testing.T, f *fixture, opts serve.Options) *serve.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(Path, f.edge.Handler())
	serve.Health(mux, f.edge.Ready)
	opts.Addr = "127.0.0.1:0"
	opts.DeferAdmission = DefersAdmission
	opts.Logger = slog.New(slog.DiscardHandler)
	srv, err := serve.Listen(mux, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return srv
}

// attackRequest is the start of an unauthenticated request that announces
// a body of length bytes (1048612, the largest package, in issue 16) and
// then sends nothing.
func attackRequest(length int) string { return attackRequestWith(length, "") }

// attackRequestWith is attackRequest with extra header lines.
func attackRequestWith(length int, extra string) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer x\r\nContent-Length: %d\r\n%s\r\n", Path, length, extra)
}

// holdAttack opens n connections from the given loopback hosts that each
// send attackRequest(length) and keep silent; they are closed when the
// test ends.
func holdAttack(t *testing.T, addr string, n, length int, hosts []byte) []net.Conn {
	t.Helper()
	return holdAttackWith(t, addr, n, attackRequest(length), hosts)
}

// holdAttackWith is holdAttack with the request start req.
func holdAttackWith(t *testing.T, addr string, n int, req string, hosts []byte) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	for i := range n {
		c, err := loopbackDialer(hosts[i%len(hosts)]).Dial("tcp", addr)
		if err != nil {
			t.Fatalf("attacker %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatalf("attacker %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	return conns
}

// trickle opens n connections from the given hosts that send a request
// line and then one header byte every 100 ms, until stop is closed.
func trickle(t *testing.T, addr string, n int, hosts []byte, stop <-chan struct{}) *sync.WaitGroup {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		c, err := loopbackDialer(hosts[i%len(hosts)]).Dial("tcp", addr)
		if err != nil {
			// A connection refused at once is what a per-address cap does.
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			if _, err := io.WriteString(c, "POST "+Path+" HTTP/1.1\r\nHost: edge\r\nX-Slow: "); err != nil {
				return
			}
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := c.Write([]byte{'a'}); err != nil {
					return
				}
			}
		}()
	}
	return &wg
}

// The attack of issue 16: 80 unauthenticated clients announce the largest
// package and send nothing, and 300 connections trickle their headers,
// while valid devices send packages. Every valid package is answered 202,
// within a generous bound (a liveness bound, not a speed assertion). Before
// the edge authenticated ahead of reserving budget, the idle requests held
// the whole in-flight byte budget and the devices got 429.
func TestUnauthenticatedAttackersHoldNothingDevicesGet202(t *testing.T) {
	f := newFixture(t, nil, nil)
	// 64 concurrency slots: fewer than the attackers, who must hold none.
	srv := servedFixture(t, f, serve.Options{Registerer: prometheus.NewRegistry(), MaxConcurrentRequests: 64, MaxConnsPerClient: 256})
	addr := srv.Addr()

	// Eight attacker addresses, 25 idle requests each: under every
	// per-address cap, so that what is shown is that they hold nothing.
	// 80 announce the largest package; the smaller ones would fill what a
	// budget that reserves ahead has left, down to less than a package.
	hosts := []byte{2, 3, 4, 5, 6, 7, 8, 9}
	const attackers = 200
	holdAttack(t, addr, 80, MaxPackageBytes, hosts)
	for _, length := range []int{32 << 10, 1 << 10, 40} {
		holdAttack(t, addr, 40, length, hosts)
	}
	stop := make(chan struct{})
	wg := trickle(t, addr, 300, []byte{20, 21, 22, 23, 24, 25}, stop)
	defer func() {
		close(stop)
		wg.Wait()
	}()
	waitUnauthenticated(t, f, attackers)

	const devices, each = 16, 4
	client := &http.Client{Transport: &http.Transport{DialContext: loopbackDialer(1).DialContext}}
	defer client.CloseIdleConnections()
	var mu sync.Mutex
	var failures []string
	var dwg sync.WaitGroup
	for d := range devices {
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			id := uint64(1000 + d)
			pkg := testPackage(t, id, d%2 == 0)
			for i := range each {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				code, err := postWith(ctx, client, srv.URL(), pkg, bearerFor(testSecret, id))
				cancel()
				if err != nil || code != http.StatusAccepted {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("device %d package %d: %d %v", id, i, code, err))
					mu.Unlock()
				}
			}
		}()
	}
	dwg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d valid packages not accepted within 5 s under attack; first: %s", len(failures), devices*each, failures[0])
	}
	if got := metric(t, f.reg, "watershed_edge_inflight_bytes", "", ""); got != 0 {
		t.Errorf("the attackers hold %v bytes of budget", got)
	}
}

// postWith posts body with auth through client and returns the status.
func postWith(ctx context.Context, client *http.Client, base string, body []byte, auth string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+Path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", auth)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// waitUnauthenticated waits until the attack has settled: n requests in the
// edge's handler.
func waitUnauthenticated(t *testing.T, f *fixture, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for metric(t, f.reg, "watershed_edge_unauthenticated_requests", "", "") < float64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("%v of %d attackers reached the edge", metric(t, f.reg, "watershed_edge_unauthenticated_requests", "", ""), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// holdAuthenticated sends a request of device id whose package header
// arrives and whose rest does not, and waits until the edge holds its
// budget.
func holdAuthenticated(t *testing.T, f *fixture, id uint64) net.Conn {
	t.Helper()
	pkg := testPackage(t, id, false)
	c, err := net.Dial("tcp", f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	before := f.edge.budget.inUse()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: edge\r\nAuthorization: %s\r\nContent-Length: %d\r\n\r\n%s", Path, bearerFor(testSecret, id), len(pkg), pkg[:protocol.HeaderLenV2])
	deadline := time.Now().Add(10 * time.Second)
	for f.edge.budget.inUse() < before+int64(len(pkg)) {
		if time.Now().After(deadline) {
			t.Fatal("the held request took no budget")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return c
}

// A client address has at most MaxUnauthenticatedPerClient requests that
// have not authenticated; more are answered 429 at once, while other
// addresses are served.
func TestUnauthenticatedRequestsPerClientAreCapped(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxUnauthenticatedPerClient = 4 }, nil)
	addr := f.srv.Listener.Addr().String()
	holdAttack(t, addr, 4, MaxPackageBytes, []byte{2})
	waitUnauthenticated(t, f, 4)
	client := &http.Client{Transport: &http.Transport{DialContext: loopbackDialer(2).DialContext}}
	defer client.CloseIdleConnections()
	code, err := postWith(context.Background(), client, f.srv.URL, testPackage(t, 9, false), bearerFor(testSecret, 9))
	if err != nil || code != http.StatusTooManyRequests {
		t.Errorf("a fifth request from the attacker's address: %d %v, want 429", code, err)
	}
	if n := metric(t, f.reg, "watershed_edge_rejected_total", "reason", "client_limit"); n != 1 {
		t.Errorf("rejected_total{reason=client_limit} = %v, want 1", n)
	}
	other := &http.Client{Transport: &http.Transport{DialContext: loopbackDialer(3).DialContext}}
	defer other.CloseIdleConnections()
	if code, err := postWith(context.Background(), other, f.srv.URL, testPackage(t, 9, false), bearerFor(testSecret, 9)); err != nil || code != http.StatusAccepted {
		t.Errorf("a device at another address: %d %v, want 202", code, err)
	}
}

// A client address has at most MaxConnsPerClient open connections; more
// are closed at once.
func TestConnectionsPerClientAreCapped(t *testing.T) {
	f := newFixture(t, nil, nil)
	reg := prometheus.NewRegistry()
	srv := servedFixture(t, f, serve.Options{Registerer: reg, MaxConnsPerClient: 3})
	holdAttack(t, srv.Addr(), 3, MaxPackageBytes, []byte{2})
	waitUnauthenticated(t, f, 3)
	c, err := loopbackDialer(2).Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("a fourth connection from one address: read %d, %v; want it closed (EOF)", n, err)
	}
	if n := metric(t, reg, "watershed_http_connections_refused_total", "", ""); n != 1 {
		t.Errorf("watershed_http_connections_refused_total = %v, want 1", n)
	}
	client := &http.Client{Transport: &http.Transport{DialContext: loopbackDialer(3).DialContext}}
	defer client.CloseIdleConnections()
	if code, err := postWith(context.Background(), client, srv.URL(), testPackage(t, 9, false), bearerFor(testSecret, 9)); err != nil || code != http.StatusAccepted {
		t.Errorf("a device at another address: %d %v, want 202", code, err)
	}
}

// The client address comes from the proxies' header (X-Forwarded-For, or
// Forwarded when configured; never the other) only when the peer is a
// trusted proxy, and is the nearest hop that is not one.
func TestClientAddressFromProxyHeadersOnlyFromTrustedProxies(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	cases := []struct {
		name, peer, xff, fwd string
		trusted              []netip.Prefix
		header               string
		want                 string
	}{
		{"no proxies configured: the header is ignored", "192.0.2.7:5000", "198.51.100.1", "", nil, "", "192.0.2.7"},
		{"untrusted peer: the header is ignored", "192.0.2.7:5000", "198.51.100.1", "", proxies, "", "192.0.2.7"},
		{"trusted peer: the nearest untrusted hop", "10.1.2.3:5000", "203.0.113.9, 198.51.100.1, 10.0.0.5", "", proxies, "", "198.51.100.1"},
		{"a Forwarded header the proxy does not write is not believed", "10.1.2.3:5000", "198.51.100.1", "for=203.0.113.66", proxies, "", "198.51.100.1"},
		{"Forwarded when the proxies write it", "10.1.2.3:5000", "198.51.100.1", `for=203.0.113.9;proto=https, for="[2001:db8:1:2::7]:443"`, proxies, HeaderForwarded, "2001:db8:1:2::"},
		{"malformed hop: the last good one", "10.1.2.3:5000", "garbage, 10.0.0.5", "", proxies, "", "10.0.0.5"},
		{"IPv6 peers count by /64", "[2001:db8:aa:bb:1:2:3:4]:5000", "", "", nil, "", "2001:db8:aa:bb::"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, Path, nil)
			r.RemoteAddr = c.peer
			if c.xff != "" {
				r.Header.Set("X-Forwarded-For", c.xff)
			}
			if c.fwd != "" {
				r.Header.Set("Forwarded", c.fwd)
			}
			if got := clientAddr(r, c.trusted, c.header); got.String() != c.want {
				t.Errorf("clientAddr = %s, want %s", got, c.want)
			}
		})
	}
}

// A device has at most MaxDeviceInFlight packages in flight; more are
// answered 429 rate_limited, while other devices are served.
func TestDeviceInFlightIsCapped(t *testing.T) {
	f := newFixture(t, nil, nil)
	const id = 77
	for range DefaultMaxDeviceInFlight {
		holdAuthenticated(t, f, id)
	}
	r := f.post(t, testPackage(t, id, false), bearerFor(testSecret, id))
	if r.code != http.StatusTooManyRequests || r.errWord != "rate_limited" || r.retryAfter == "" {
		t.Errorf("a third package in flight: %s, want 429 rate_limited with Retry-After", describe(r))
	}
	if n := metric(t, f.reg, "watershed_edge_rejected_total", "reason", "device_in_flight"); n != 1 {
		t.Errorf("rejected_total{reason=device_in_flight} = %v, want 1", n)
	}
	if r := f.post(t, testPackage(t, id+1, false), bearerFor(testSecret, id+1)); r.code != http.StatusAccepted {
		t.Errorf("another device: %s, want 202", describe(r))
	}
}

// A body is cut when it arrives slower than the minimum rate allows (the
// deadline is BodyTimeout plus its length at MinBodyRate), long before the
// server's one read timeout; a larger body sent promptly is accepted under
// the same options, since its deadline scales with its length.
func TestSlowBodyIsCutByTheMinimumRate(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.BodyTimeout = 300 * time.Millisecond; o.MinBodyRate = 1000 }, nil)
	const id = 88
	pkg := testPackage(t, id, false)
	c, err := net.Dial("tcp", f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: edge\r\nAuthorization: %s\r\nContent-Length: %d\r\n\r\n", Path, bearerFor(testSecret, id), len(pkg))
	// One byte every 50 ms: 20 bytes a second, against 1000 allowed.
	sent := make(chan int, 1)
	go func() {
		n := 0
		defer func() { sent <- n }()
		for _, b := range pkg {
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
			n++
			time.Sleep(50 * time.Millisecond)
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := readResult(t, resp); r.code != http.StatusBadRequest {
		t.Errorf("slow body: %s, want 400", describe(r))
	}
	c.Close()
	if n := <-sent; n >= len(pkg) {
		t.Errorf("the slow sender sent all %d bytes before it was cut", n)
	}
	big := manyMessages(t, id, 4000) // about 64 KiB: over 60 s at 1000 B/s, well under it at loopback speed
	if r := f.post(t, big, bearerFor(testSecret, id)); r.code != http.StatusAccepted {
		t.Errorf("a %d-byte body sent promptly: %s, want 202", len(big), describe(r))
	}
	nothingWrittenBut(t, f, 1)
}

// nothingWrittenBut checks the raw topic holds n records.
func nothingWrittenBut(t *testing.T, f *fixture, n int64) {
	t.Helper()
	if got := topicSize(t, f.kafka, testRaw); got != n {
		t.Errorf("raw topic holds %d records, want %d", got, n)
	}
}

// Behind a trusted proxy, the per-client caps count the client named by
// X-Forwarded-For, and the proxy's own connections are not capped.
func TestTrustedProxyCarriesManyClients(t *testing.T) {
	proxy := []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	f := newFixture(t, func(o *Options) { o.MaxUnauthenticatedPerClient = 2; o.TrustedProxies = proxy }, nil)
	srv := servedFixture(t, f, serve.Options{Registerer: prometheus.NewRegistry(), MaxConnsPerClient: 1, TrustedProxies: proxy})
	// Two idle requests of one client through the proxy, on two of the
	// proxy's connections (over MaxConnsPerClient: the proxy is exempt).
	holdAttackWith(t, srv.Addr(), 2, attackRequestWith(MaxPackageBytes, "X-Forwarded-For: 203.0.113.5\r\n"), []byte{2})
	waitUnauthenticated(t, f, 2)
	post := func(client string) int {
		t.Helper()
		c := &http.Client{Transport: &http.Transport{DialContext: loopbackDialer(2).DialContext}}
		defer c.CloseIdleConnections()
		req, err := http.NewRequest(http.MethodPost, srv.URL()+Path, bytes.NewReader(testPackage(t, 9, false)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", bearerFor(testSecret, 9))
		req.Header.Set("X-Forwarded-For", client)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("203.0.113.5"); code != http.StatusTooManyRequests {
		t.Errorf("a third request of the capped client: %d, want 429", code)
	}
	if code := post("203.0.113.6"); code != http.StatusAccepted {
		t.Errorf("another client through the same proxy: %d, want 202", code)
	}
}
