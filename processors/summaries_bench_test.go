package processors_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/topology/topologytest"
)

// BenchmarkSummaryWindowFill is the summaries group's cost per record as a
// device's hour fills, live: packages of fixes records each, in time order,
// perHour of them an hour. One op is one hour of one device (the hour
// before closes during it); ns/record and the bytes written to the windows
// changelog per record are reported. A cost that grows with perHour is a
// cost per record that grows with the window. The last case is a device
// of the fleet: a message a second, in packages of 25.
func BenchmarkSummaryWindowFill(b *testing.B) {
	for _, c := range []struct{ perHour, fixes int }{{60, 1}, {600, 1}, {3600, 1}, {144, 25}} {
		perHour, fixes := c.perHour, c.fixes
		name := "records=" + strconv.Itoa(perHour)
		if fixes > 1 {
			name += "/fixes=" + strconv.Itoa(fixes)
		}
		b.Run(name, func(b *testing.B) {
			p := processors.New(processors.Config{})
			d := topologytest.New(b, p.Topology, processors.GroupSummaries)
			key := strconv.Itoa(device)
			changelog := p.SummaryWindows.Name()
			step := hourMs / uint64(perHour)
			w := uint64(baseTime) - uint64(baseTime)%hourMs
			offset := int64(0)
			var bytes, changes int
			b.ResetTimer()
			for range b.N {
				for i := range perHour {
					offset++
					ms := w + uint64(i)*step
					rs := records.Readings{DeviceID: device, RawOffset: offset, Part: 0, ReceivedMs: int64(ms)}
					for j := range fixes {
						at := ms + uint64(j)*step/uint64(fixes)
						rs.Items = append(rs.Items, fixAt(device, at, 47+float64(i*fixes+j)*1e-4, float64((i*fixes+j)%120)))
					}
					topologytest.SendAt(d, p.Normalized, key, time.UnixMilli(int64(ms)), rs)
				}
				b.StopTimer()
				for _, r := range d.ReadRaw(changelog) {
					bytes += len(r.Key) + len(r.Value)
					changes++
				}
				topologytest.Read(d, p.Summaries)
				b.StartTimer()
				w += hourMs
			}
			n := float64(b.N * perHour)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/record")
			b.ReportMetric(float64(bytes)/n, "changelog-B/record")
			b.ReportMetric(float64(changes)/n, "changes/record")
		})
	}
}
