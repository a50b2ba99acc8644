package topologytest

// RawRecord is one record of a topic as it was produced: its key and
// value bytes.
type RawRecord struct {
	Key   string
	Value []byte
}

// ReadRaw returns the records produced to topic since the last ReadRaw or
// Read of it, undecoded: any topic of the topology, a changelog too (to
// count what a group writes to it, say).
func (d *Driver) ReadRaw(topic string) []RawRecord {
	d.tb.Helper()
	qt := d.trackers[topic]
	if qt == nil {
		d.tb.Fatalf("topologytest: %s is not a topic of the topology", topic)
	}
	var out []RawRecord
	for {
		_, key, raw, ok := qt.NextRawWithHeaders()
		if !ok {
			return out
		}
		out = append(out, RawRecord{Key: key, Value: raw})
	}
}
