package bench

import (
	"fmt"
	"time"

	"github.com/watershed-io/watershed/simulator"
)

// item is one pre-generated package with what the pipeline should make of
// it.
type item struct {
	device uint64
	token  string
	body   []byte
	// code is the edge's expected answer.
	code int
	// messages is the package's record count (what the device sent); 0
	// for a package rejected as a whole.
	messages int
	// viewAdds is what the package adds to the device's progress in the
	// device-state table (Messages+Duplicates+Invalid): every record of an
	// accepted package that the decoder does not reject as a whole. 0 for
	// packages rejected as a whole.
	viewAdds uint64
	// storeAdds is how many rows the package adds to the store: its valid
	// records that are not re-sends of messages stored before.
	storeAdds uint64
	// viewAt and storeAt are the device's cumulative progress and stored
	// count once this package is in (thresholds for the trackers).
	viewAt, storeAt uint64
}

// workload is the pre-generated, seeded traffic of a run.
type workload struct {
	items []item
	// first is the fleet's clock at its first package.
	first time.Time
	// devices lists every device id that has tracked packages.
	devices []uint64
	// totals over all items.
	messages, viewAdds, storeAdds, accepted, rawMessages uint64
	genTime                                              time.Duration
	bodyBytes                                            int64
}

// generate builds n messages' worth of packages (at least one package)
// from a fleet with a virtual clock that advances as if the packages were
// sent at rate messages/s, ending now.
func generate(cfg simulator.FleetConfig, messages int64, rate float64) (*workload, error) {
	start := time.Now()
	avg := float64(cfg.MessagesPerPackage.Min+cfg.MessagesPerPackage.Max) / 2
	if avg <= 0 {
		r := simulator.DefaultMessagesPerPackage()
		avg = float64(r.Min+r.Max) / 2
	}
	step := time.Duration(float64(time.Second) * avg / rate)
	span := time.Duration(float64(messages)/rate*float64(time.Second)) + time.Minute
	t0 := start.Add(-span)
	var seq int64
	cfg.Now = func() time.Time { return t0.Add(time.Duration(seq) * step) }
	f, err := simulator.NewFleet(cfg)
	if err != nil {
		return nil, fmt.Errorf("bench: fleet: %w", err)
	}
	w := &workload{items: make([]item, 0, int(float64(messages)/avg*1.05)+16), first: t0}
	type progress struct{ view, store uint64 }
	perDevice := map[uint64]*progress{}
	for int64(w.messages) < messages || len(w.items) == 0 {
		p, err := f.Next()
		if err != nil {
			return nil, fmt.Errorf("bench: generate: %w", err)
		}
		seq++
		it := item{device: p.Device, token: p.Token, body: p.Bytes, code: p.Expect.Code, messages: len(p.Expect.Records)}
		if p.Expect.Code == 202 {
			w.accepted++
			w.rawMessages += uint64(it.messages)
			if p.Expect.Reject == 0 && len(p.Expect.Records) > 0 && p.Expect.Device == p.Device {
				it.viewAdds = uint64(len(p.Expect.Records))
				if p.ResendOf == 0 {
					for _, r := range p.Expect.Records {
						if r.Outcome == simulator.OutcomeValid && r.Fault != simulator.FaultRebatch {
							it.storeAdds++
						}
					}
				}
			}
		}
		if it.viewAdds > 0 {
			pr := perDevice[it.device]
			if pr == nil {
				pr = &progress{}
				perDevice[it.device] = pr
				w.devices = append(w.devices, it.device)
			}
			pr.view += it.viewAdds
			pr.store += it.storeAdds
			it.viewAt, it.storeAt = pr.view, pr.store
		}
		w.messages += uint64(it.messages)
		w.viewAdds += it.viewAdds
		w.storeAdds += it.storeAdds
		w.bodyBytes += int64(len(it.body))
		w.items = append(w.items, it)
	}
	w.genTime = time.Since(start)
	return w, nil
}
