package edge

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// One device over its rate is answered 429 with a Retry-After computed
// from its bucket, while another device is still served.
func TestDeviceOverItsRateIs429WhileOthersAreServed(t *testing.T) {
	const burst = 3
	// One package an hour: the bucket does not refill during the test.
	f := newFixture(t, func(o *Options) { o.DeviceRate = 1.0 / 3600; o.DeviceBurst = burst }, nil)
	const noisy, quiet = 1001, 1002
	for i := range burst {
		if r := f.post(t, testPackage(t, noisy, true), bearerFor(testSecret, noisy)); r.code != http.StatusAccepted {
			t.Fatalf("package %d of the burst: %s, want 202", i, describe(r))
		}
	}
	r := f.post(t, testPackage(t, noisy, true), bearerFor(testSecret, noisy))
	if r.code != http.StatusTooManyRequests || r.errWord != "rate_limited" {
		t.Fatalf("package over the burst: %s, want 429 rate_limited", describe(r))
	}
	secs, err := strconv.Atoi(r.retryAfter)
	// A whole token takes an hour; some of it may have refilled already.
	if err != nil || secs < 3500 || secs > 3600 {
		t.Errorf("Retry-After %q, want the bucket's wait of about 3600 seconds", r.retryAfter)
	}
	if r := f.post(t, testPackage(t, quiet, true), bearerFor(testSecret, quiet)); r.code != http.StatusAccepted {
		t.Errorf("another device while the first is limited: %s, want 202", describe(r))
	}
	if got := metric(t, f.reg, "watershed_edge_rate_limited_total", "", ""); got != 1 {
		t.Errorf("watershed_edge_rate_limited_total = %v, want 1", got)
	}
	if got := metric(t, f.reg, "watershed_edge_rejected_total", "reason", "rate_limited"); got != 1 {
		t.Errorf("rejected_total{reason=rate_limited} = %v, want 1", got)
	}
	if got := metric(t, f.reg, "watershed_edge_rate_limiter_devices", "", ""); got != 2 {
		t.Errorf("watershed_edge_rate_limiter_devices = %v, want 2", got)
	}
	if n := topicSize(t, f.kafka, testRaw); n != burst+1 {
		t.Errorf("raw topic holds %d records, want %d", n, burst+1)
	}
}

// A request with a wrong token does not spend the device's bucket: the
// limit is checked after authentication.
func TestWrongTokensDoNotSpendTheBucket(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.DeviceRate = 1.0 / 3600; o.DeviceBurst = 1 }, nil)
	const id = 2001
	for range 5 {
		if r := f.post(t, testPackage(t, id, true), bearerFor([]byte("stolen-or-guessed"), id)); r.code != http.StatusUnauthorized {
			t.Fatalf("wrong token: %s, want 401", describe(r))
		}
	}
	if r := f.post(t, testPackage(t, id, true), bearerFor(testSecret, id)); r.code != http.StatusAccepted {
		t.Fatalf("the device's own package after a flood of wrong tokens: %s, want 202", describe(r))
	}
}

func TestLimiterRefillsAndStaysBounded(t *testing.T) {
	now := time.Unix(0, 0)
	count := 0
	l := newLimiter(dimension{rate: 2, burst: 4}, dimension{}, limiterShards, func() time.Time { return now }, func(d int) { count += d })
	for i := range 4 {
		if ok, _ := l.allow(7, 100); !ok {
			t.Fatalf("token %d of the burst refused", i)
		}
	}
	ok, wait := l.allow(7, 100)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("empty bucket: allow = %v, wait %v; want false, 500ms", ok, wait)
	}
	now = now.Add(250 * time.Millisecond)
	if ok, wait := l.allow(7, 100); ok || wait != 250*time.Millisecond {
		t.Fatalf("half a token: allow = %v, wait %v; want false, 250ms", ok, wait)
	}
	now = now.Add(250 * time.Millisecond)
	if ok, _ := l.allow(7, 100); !ok {
		t.Fatal("refilled token refused")
	}
	// One bucket per shard at most: thousands of devices keep the count
	// at the bound.
	for id := range uint64(10_000) {
		l.allow(id, 100)
		if count > limiterShards {
			t.Fatalf("%d buckets held after device %d, bound %d", count, id, limiterShards)
		}
	}
	held := 0
	for i := range l.shards {
		held += len(l.shards[i].buckets)
	}
	if held != count {
		t.Errorf("the gauge says %d buckets, the shards hold %d", count, held)
	}
}

func TestNewValidatesRateOptions(t *testing.T) {
	_, k := startKafka(t)
	for name, o := range map[string]Options{
		"negative rate":       {DeviceRate: -1, DeviceBurst: 1},
		"rate without burst":  {DeviceRate: 1},
		"negative max device": {MaxRateLimitedDevices: -1},
	} {
		o.Kafka, o.Secret = k, testSecret
		if e, err := New(o); err == nil {
			e.Close()
			t.Errorf("%s: New succeeded", name)
		}
	}
}

// A fleet moves from the previous secret to the current one, each device
// at a random moment while the fleet sends, and no package is refused:
// the edge accepts both secrets during the rotation.
func TestSecretRotationRefusesNoPackage(t *testing.T) {
	// The fleet moves from testPrevSecret to testSecret; the edge holds
	// both, as `watershed ingest --device-secret NEW
	// --previous-device-secret OLD` does during a rotation.
	f := newFixture(t, nil, nil)
	const devices, packages = 20, 10
	type refusal struct {
		device uint64
		seq    int
		code   int
		err    error
	}
	refusals := make(chan refusal, devices*packages)
	var wg sync.WaitGroup
	for d := range devices {
		id := uint64(5000 + d)
		body := testPackage(t, id, true)
		// Each device switches before a random package: 0 is from the
		// start, packages is never during the run.
		switchAt := rand.IntN(packages + 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range packages {
				secret := testPrevSecret
				if seq >= switchAt {
					secret = testSecret
				}
				req, err := http.NewRequest(http.MethodPost, f.srv.URL+Path, bytes.NewReader(body))
				if err != nil {
					refusals <- refusal{id, seq, 0, err}
					continue
				}
				req.Header.Set("Authorization", bearerFor(secret, id))
				resp, err := f.srv.Client().Do(req)
				if err != nil {
					refusals <- refusal{id, seq, 0, err}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					refusals <- refusal{id, seq, resp.StatusCode, nil}
				}
			}
		}()
	}
	wg.Wait()
	close(refusals)
	for r := range refusals {
		t.Errorf("device %d package %d refused during the rotation: %d %v", r.device, r.seq, r.code, r.err)
	}
	if n := topicSize(t, f.kafka, testRaw); n != devices*packages {
		t.Errorf("raw topic holds %d records, want %d", n, devices*packages)
	}
	// After the rotation the previous secret is dropped: old tokens fail.
	g := newFixture(t, func(o *Options) { o.PreviousSecret = nil }, nil)
	if r := g.post(t, testPackage(t, 5000, true), bearerFor(testPrevSecret, 5000)); r.code != http.StatusUnauthorized {
		t.Errorf("old token after the rotation ended: %s, want 401", describe(r))
	}
}

// A device over its byte rate is answered 429 with a Retry-After computed
// from its byte bucket, while another device is served.
func TestDeviceOverItsByteRateIs429(t *testing.T) {
	const rate = 1000 // bytes a second: nothing refills during the test
	f := newFixture(t, func(o *Options) { o.DeviceByteRate = rate; o.DeviceByteBurst = MaxPackageBytes }, nil)
	const noisy, quiet = 3001, 3002
	pkg := manyMessages(t, noisy, 4000)
	fits := MaxPackageBytes / len(pkg)
	for i := range fits {
		if r := f.post(t, pkg, bearerFor(testSecret, noisy)); r.code != http.StatusAccepted {
			t.Fatalf("package %d of %d bytes within the burst: %s, want 202", i, len(pkg), describe(r))
		}
	}
	r := f.post(t, pkg, bearerFor(testSecret, noisy))
	if r.code != http.StatusTooManyRequests || r.errWord != "rate_limited" {
		t.Fatalf("package over the byte burst: %s, want 429 rate_limited", describe(r))
	}
	missing := len(pkg) - (MaxPackageBytes - fits*len(pkg))
	secs, err := strconv.Atoi(r.retryAfter)
	if want := (missing + rate - 1) / rate; err != nil || secs < want-1 || secs > want {
		t.Errorf("Retry-After %q, want about %d seconds for %d bytes at %d B/s", r.retryAfter, want, missing, rate)
	}
	if r := f.post(t, manyMessages(t, quiet, 4000), bearerFor(testSecret, quiet)); r.code != http.StatusAccepted {
		t.Errorf("another device: %s, want 202", describe(r))
	}
	if _, err := New(Options{Kafka: f.kafka, Secret: testSecret, DeviceByteRate: rate, DeviceByteBurst: MaxPackageBytes - 1}); err == nil {
		t.Error("a byte burst under the largest package was accepted")
	}
}
