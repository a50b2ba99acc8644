//go:build integration

package views

import (
	"context"
	"math"
	"net/http"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/sinks/cassandra"
	"github.com/watershed-io/watershed/sinks/sinktest"
	"github.com/watershed-io/watershed/testinfra"
)

// TestIntegrationHistoryCassandra pages a device's readings of three days
// newest first through the readings endpoint, with the cursor, from a real
// Cassandra, and reads its summaries back.
func TestIntegrationHistoryCassandra(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hosts := testinfra.Cassandra(t)
	user, password := testinfra.CassandraLogin(t)
	st, err := cassandra.Open(ctx, cassandra.Options{Hosts: hosts, Keyspace: testinfra.CreateKeyspace(t, hosts),
		Consistency: gocql.One, Timeout: 20 * time.Second, Username: user, Password: password})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Every 20 minutes for three days back from historyNow, two readings a
	// time (the largest CRC and a small one), and another device's.
	var rs []records.Reading
	first := uint64(historyNow.Add(-72 * time.Hour).UnixMilli())
	for ms := first; ms < uint64(historyNow.UnixMilli()); ms += 20 * 60_000 {
		for _, crc := range []uint32{math.MaxUint32, 9} {
			rs = append(rs, records.Reading{DeviceID: 42, TimeMs: ms, ContentCRC: crc, Type: protocol.TypeBattery, BatteryV: 12})
		}
		rs = append(rs, records.Reading{DeviceID: 43, TimeMs: ms, ContentCRC: 1, Type: protocol.TypeBattery})
	}
	if err := st.Write(ctx, rs); err != nil {
		t.Fatal(err)
	}
	sums := []records.Summary{sinktest.SampleSummary(42, 0), sinktest.SampleSummary(42, 1)}
	if err := st.WriteSummaries(ctx, sums); err != nil {
		t.Fatal(err)
	}
	hs := newHarnessWith(t, Keys{}, func(o *Options) { o.Readings, o.Summaries = st, st })
	hs.srv.now = func() time.Time { return historyNow }

	from := historyNow.Add(-72 * time.Hour).Format(time.RFC3339)
	got, pages := pageAll(t, hs, "/v1/devices/42/readings?limit=50&from="+from+"&to="+historyNow.Format(time.RFC3339), 50)
	if want := 2 * 72 * 3; len(got) != want || pages != (want+49)/50 {
		t.Fatalf("%d readings in %d pages, want %d in %d", len(got), pages, want, (want+49)/50)
	}
	newestFirst(t, got)
	if got[0].TimeMs != uint64(historyNow.UnixMilli())-20*60_000 || got[0].ContentCRC != math.MaxUint32 || got[len(got)-1].TimeMs != first {
		t.Errorf("first %+v, last %+v", got[0], got[len(got)-1])
	}

	w := hs.get(t, "/v1/devices/42/summaries?from=2025-05-31T00:00:00Z&to=2025-06-02T00:00:00Z", testKey)
	p := decode[struct {
		Summaries []struct {
			Closed   bool   `json:"closed"`
			Messages uint64 `json:"messages"`
		} `json:"summaries"`
	}](t, w.Body.Bytes())
	if w.Code != http.StatusOK || len(p.Summaries) != 2 || !p.Summaries[0].Closed || p.Summaries[1].Messages != sums[1].Messages {
		t.Errorf("summaries: %d %s", w.Code, w.Body)
	}
}
