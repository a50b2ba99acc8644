package edge

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkHandlePackage measures the edge's own cost per accepted package,
// without the HTTP server: the handler's checks, its allocations and the
// produce through sarama to an embedded broker in this process, with many
// requests in flight so that the producer batches across them as it does
// under load. cpu-us/op is the process's CPU time per request (the
// broker's share included); ns/op is wall time on however many cores.
func BenchmarkHandlePackage(b *testing.B) {
	_, k := startKafka(b)
	k.FlushInterval = 10 * time.Millisecond
	e, err := New(Options{Kafka: k, RawTopic: testRaw, DeadLetterTopic: testDLQ, Secret: testSecret,
		EdgeID: testEdgeID, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Close() })
	h := e.Handler()
	const devices = 4096
	pkgs, auths := make([][]byte, devices), make([]string, devices)
	for i := range devices {
		pkgs[i], auths[i] = testPackage(b, uint64(i+1), true), bearerFor(testSecret, uint64(i+1))
	}
	var next atomic.Uint64
	b.SetParallelism(64) // requests wait for Kafka's answer: keep many in flight
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		// A device is one goroutine's only, so it never has two in flight.
		d := int(next.Add(1)-1) % devices
		for pb.Next() {
			r := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(pkgs[d]))
			r.Header.Set("Authorization", auths[d])
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusAccepted {
				b.Errorf("answered %d: %s", w.Code, w.Body)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
}

// processCPU is the process's user and system CPU time.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// The 202's constant body is what answer would encode.
func TestAcceptedBody(t *testing.T) {
	b, err := json.Marshal(response{Status: "accepted"})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b) + "\n"; got != acceptedBody {
		t.Fatalf("acceptedBody %q, answer writes %q", acceptedBody, got)
	}
}
