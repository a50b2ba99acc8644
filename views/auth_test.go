package views

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/watershed-io/watershed/internal/serve"
)

// value returns the value of a counter or gauge.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func hashOf(key string) string {
	h := sha256.Sum256([]byte(key))
	return HashPrefix + hex.EncodeToString(h[:])
}

// A key file may hold the keys' SHA-256 instead of the keys: the key is
// accepted, the hash presented as a key is not.
func TestHashedKeys(t *testing.T) {
	const key = "hashed-key-q3Jx0v5Yp8bN2kT7"
	file := "# hashed\n" + hashOf(key) + " 1001\n"
	k, err := ParseKeys("keys", strings.NewReader(file), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := newHarness(t, k, stateV1())
	if w := hs.get(t, "/v1/devices/1001", key); w.Code != http.StatusOK {
		t.Errorf("key of a hashed entry: %d %s", w.Code, w.Body)
	}
	if w := hs.get(t, "/v1/devices/1001", hashOf(key)); w.Code != http.StatusUnauthorized {
		t.Errorf("the hash presented as a key: %d, want 401", w.Code)
	}
	for _, c := range []struct{ line, says string }{
		{HashPrefix + "abc *\n", "64 hexadecimal digits"},
		{HashPrefix + strings.Repeat("g", 64) + " *\n", "hexadecimal digits only"},
		{hashOf(key) + " *\n" + key + " 1001\n", "line 2: key already given on line 1"},
	} {
		if _, err := ParseKeys("keys", strings.NewReader(c.line), "", nil); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%q: %v, want an error saying %q", c.line, err, c.says)
		}
	}
	if full, err := FullScopeKey(hashOf(key)); err != nil || full.lookup(key) == nil {
		t.Errorf("FullScopeKey of a hash: %v", err)
	}
}

// Keys shorter than MinKeyLength are refused, with where they were given
// and not what they are; hashed keys and the demo's (AllowShortKeys) pass.
func TestShortKeysRefused(t *testing.T) {
	const short = "s3cret-but-short"
	file := hashOf("whatever") + " *\n" + short + " 1001\n"
	k, err := ParseKeys("keys.txt", strings.NewReader(file), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	err = k.CheckLength()
	if err == nil || !strings.Contains(err.Error(), "keys.txt line 2") || strings.Contains(err.Error(), short) {
		t.Errorf("CheckLength: %v; want the file and line, without the key", err)
	}
	if _, err := New(Options{Source: newFakeSource(), Keys: k}); err == nil {
		t.Error("New accepted a short key")
	}
	if _, err := New(Options{Source: newFakeSource(), Keys: k, AllowShortKeys: true, Registerer: prometheus.NewRegistry()}); err != nil {
		t.Errorf("New with AllowShortKeys: %v", err)
	}
	full, err := FullScopeKey(short)
	if err != nil {
		t.Fatal(err)
	}
	if err := full.CheckLength(); err == nil || !strings.Contains(err.Error(), "full-scope key (16 characters)") {
		t.Errorf("full-scope key: %v", err)
	}
	long, err := FullScopeKey(strings.Repeat("k", MinKeyLength))
	if err != nil || long.CheckLength() != nil {
		t.Errorf("a key of %d characters: %v, %v", MinKeyLength, err, long.CheckLength())
	}
	if m, err := long.Merge(full); err != nil || m.CheckLength() == nil {
		t.Errorf("a merge keeps the short key's record: %v", err)
	}
	hashed, err := FullScopeKey(hashOf("x"))
	if err != nil || hashed.CheckLength() != nil {
		t.Errorf("hashed key: %v, %v", err, hashed.CheckLength())
	}
}

// request returns a GET of device 1001 from addr with key.
func request(addr, key string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v1/devices/1001", nil)
	r.RemoteAddr = addr
	if key != "" {
		r.Header.Set("Authorization", "Bearer "+key)
	}
	return r
}

// Failed authentications are counted and limited per client address: past
// the burst a bad key from the address is answered 429 until a token is
// back; a good key passes from any address (clients behind one NAT or
// ingress are not locked out by one of them), and other addresses are not
// affected.
func TestFailedAuthenticationsAreLimitedPerClient(t *testing.T) {
	keys, err := FullScopeKey(testKey)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv, err := New(Options{Source: newFakeSource(stateV1()), Keys: keys, Registerer: reg, Logger: slog.New(slog.DiscardHandler),
		AuthFailureRate: 0.5, AuthFailureBurst: 3})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	srv.now = func() time.Time { return now }
	h := srv.Handler()
	do := func(r *http.Request) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		checkJSONAnswer(t, w)
		return w
	}
	const attacker, neighbour, other = "198.51.100.7:40000", "198.51.100.7:40001", "203.0.113.9:5555"
	for i, key := range []string{"wrong-1", "", "wrong-3"} {
		if w := do(request(attacker, key)); w.Code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i+1, w.Code)
		}
	}
	w := do(request(attacker, "wrong-4"))
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "2" {
		t.Fatalf("past the burst: %d Retry-After %q, want 429 and 2 (one token at 0.5/s)", w.Code, w.Header().Get("Retry-After"))
	}
	// A good key from the blocked address passes (found in review: a
	// client sending bad keys locked out every client sharing its
	// address); a bad one from the same host on another port is the same
	// client, still limited.
	if w := do(request(neighbour, testKey)); w.Code != http.StatusOK {
		t.Errorf("good key from the blocked address: %d, want 200", w.Code)
	}
	if w := do(request(neighbour, "wrong-n")); w.Code != http.StatusTooManyRequests {
		t.Errorf("bad key from the blocked address on another port: %d, want 429", w.Code)
	}
	if w := do(request(other, testKey)); w.Code != http.StatusOK {
		t.Errorf("good key from another address: %d, want 200", w.Code)
	}
	if w := do(request(other, "wrong")); w.Code != http.StatusUnauthorized {
		t.Errorf("first failure of another address: %d, want 401", w.Code)
	}
	now = now.Add(2 * time.Second) // one token back
	if w := do(request(attacker, testKey)); w.Code != http.StatusOK {
		t.Errorf("good key once a token is back: %d, want 200", w.Code)
	}
	if w := do(request(attacker, "wrong-5")); w.Code != http.StatusUnauthorized {
		t.Errorf("a failure with a token: %d, want 401", w.Code)
	}
	if w := do(request(attacker, "wrong-6")); w.Code != http.StatusTooManyRequests {
		t.Errorf("failure without a token: %d, want 429", w.Code)
	}
	// Every failure counts, limited or not; 3 were limited.
	if got := value(t, srv.metrics.authFailed); got != 8 {
		t.Errorf("watershed_view_auth_failures_total = %v, want 8", got)
	}
	if got := value(t, srv.metrics.authLimited); got != 3 {
		t.Errorf("watershed_view_auth_rate_limited_total = %v, want 3", got)
	}
	// IPv6 clients are limited by /64.
	for i := range 3 {
		do(request(fmt.Sprintf("[2001:db8:1:2::%x]:443", i+1), "wrong"))
	}
	if w := do(request("[2001:db8:1:2:ffff::1]:443", "wrong")); w.Code != http.StatusTooManyRequests {
		t.Errorf("a bad key from another address of the same IPv6 /64: %d, want 429", w.Code)
	}
	if w := do(request("[2001:db8:1:3::1]:443", testKey)); w.Code != http.StatusOK {
		t.Errorf("another IPv6 /64: %d, want 200", w.Code)
	}
}

// The memory of failed clients is bounded.
func TestAuthLimiterIsBounded(t *testing.T) {
	l := newAuthLimiter(1, 5, 64)
	now := time.Now()
	for i := range 10_000 {
		l.failed(clientKey(fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255)), now)
		if n := len(l.buckets); n > 64 {
			t.Fatalf("%d buckets after %d clients, bound 64", n, i+1)
		}
	}
	if n := l.n.Load(); n < 1 || n > 64 {
		t.Errorf("count %d", n)
	}
}

// A flood of requests with wrong keys, each claiming a large body it never
// sends, holds none of the server's request slots: a client with the right
// key is answered at once.
func TestFailedAuthenticationHoldsNothing(t *testing.T) {
	keys, err := FullScopeKey(testKey)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	v, err := New(Options{Source: newFakeSource(stateV1()), Keys: keys, Registerer: reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(DevicesPath, v.Handler())
	s, err := serve.Listen(mux, serve.Options{Addr: "127.0.0.1:0", MaxConcurrentRequests: 4, Registerer: reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	// 64 connections each send headers of a request with a wrong key and
	// a 1 MiB body that never comes, and keep the connection open.
	var conns []net.Conn
	var wg sync.WaitGroup
	codes := make(chan string, 64)
	for i := range 64 {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /v1/devices/1001 HTTP/1.1\r\nHost: v\r\nAuthorization: Bearer wrong-%d\r\nContent-Length: 1048576\r\n\r\n", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := make([]byte, 12)
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			n, _ := io.ReadFull(c, b)
			codes <- string(b[:n])
		}()
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != "HTTP/1.1 401" && c != "HTTP/1.1 429" {
			t.Errorf("held request answered %q, want 401 or 429", c)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, s.URL()+"/v1/devices/1001", nil)
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a good key from another address during the flood: %d, want 200", resp.StatusCode)
	}
	if got := value(t, v.metrics.authFailed); got != 64 {
		t.Errorf("failed requests counted %v, want 64", got)
	}
}

// The keys are reloaded when their file changes and on a signal; a file
// that does not load keeps the keys before and marks them stale.
func TestWatchKeysReloads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys")
	const keyA, keyB, keyC = "key-a-q3Jx0v5Yp8bN2kT7wR4m", "key-b-Vn5Qe8Tz1Ku4Wb7Xc0Ya3", "key-c-Z1sD6fH9gL0cM8nB5vC2x"
	write := func(body string) {
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(keyA + " *\n")
	load := func() (Keys, error) { return LoadKeys(path, "") }
	keys, err := load()
	if err != nil {
		t.Fatal(err)
	}
	hs := newHarness(t, keys, stateV1())
	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	stopped := make(chan error, 1)
	go func() {
		stopped <- hs.srv.WatchKeys(ctx, WatchOptions{Files: []string{path}, Load: load, Interval: 20 * time.Millisecond, Reload: hup})
	}()
	defer func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Error(err)
		}
		if strings.Contains(hs.log.String(), "short-key") {
			t.Errorf("the log holds a key: %s", hs.log)
		}
	}()
	code := func(key string) int {
		r := request("192.0.2.50:1", key)
		w := httptest.NewRecorder()
		hs.h.ServeHTTP(w, r)
		return w.Code
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("no %s after 20s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if code(keyA) != http.StatusOK {
		t.Fatal("key A not accepted at start")
	}
	write(keyB + " *\n")
	waitFor("reload to key B", func() bool { return code(keyB) == http.StatusOK })
	if c := code(keyA); c != http.StatusUnauthorized {
		t.Errorf("removed key A: %d, want 401", c)
	}
	// A file that does not load (a short key) keeps key B, stale.
	write("short-key *\n")
	waitFor("a failed reload", func() bool {
		return value(t, hs.srv.metrics.reloads.WithLabelValues("error")) >= 1
	})
	if c := code(keyB); c != http.StatusOK {
		t.Errorf("key B after a failed reload: %d, want 200 (kept)", c)
	}
	if value(t, hs.srv.metrics.keysStale) != 1 {
		t.Error("watershed_view_keys_stale is not 1 after a failed reload")
	}
	write(keyC + " *\n")
	waitFor("reload to key C", func() bool { return code(keyC) == http.StatusOK })
	if value(t, hs.srv.metrics.keysStale) != 0 {
		t.Error("watershed_view_keys_stale is not 0 after a good reload")
	}
}

// A signal reloads at once, even when the files look unchanged.
func TestWatchKeysReloadsOnSignal(t *testing.T) {
	const keyA, keyB = "key-a-q3Jx0v5Yp8bN2kT7wR4m", "key-b-Vn5Qe8Tz1Ku4Wb7Xc0Ya3"
	var mu sync.Mutex
	current := keyA
	load := func() (Keys, error) {
		mu.Lock()
		defer mu.Unlock()
		return FullScopeKey(current)
	}
	keys, _ := load()
	hs := newHarness(t, keys, stateV1())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hup := make(chan os.Signal)
	go func() { _ = hs.srv.WatchKeys(ctx, WatchOptions{Load: load, Interval: time.Hour, Reload: hup}) }()
	mu.Lock()
	current = keyB
	mu.Unlock()
	hup <- os.Interrupt // received: the reload runs before the next receive
	hup <- os.Interrupt
	if w := hs.get(t, "/v1/devices/1001", keyB); w.Code != http.StatusOK {
		t.Errorf("key B after the signal: %d", w.Code)
	}
	if w := hs.get(t, "/v1/devices/1001", keyA); w.Code != http.StatusUnauthorized {
		t.Errorf("key A after the signal: %d", w.Code)
	}
}
