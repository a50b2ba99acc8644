package edge

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// benchEdge is an Edge with only what authenticate reads.
func benchEdge(b *testing.B) *Edge {
	b.Helper()
	v, err := newVerifier(testSecret, testPrevSecret)
	if err != nil {
		b.Fatal(err)
	}
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	return &Edge{verifier: v, metrics: m}
}

// BenchmarkAuthenticate measures the token check of every request, with the
// current and the previous secret set (both are always computed).
func BenchmarkAuthenticate(b *testing.B) {
	e := benchEdge(b)
	const id = 123456789
	v1 := Token(testSecret, id)
	v2, err := TokenV2(testSecret, id, testNow.Add(time.Hour), 1)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, token string }{{"v1", v1}, {"v2", v2}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if ok, _ := e.authenticate(c.token, id, testNow); !ok {
					b.Fatal("refused")
				}
			}
		})
	}
}
