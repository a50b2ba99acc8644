package simulator

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
)

// Counts are the pipeline's counters, per device or in total.
type Counts struct {
	// Messages: unique valid messages stored.
	Messages int `json:"messages"`
	// Duplicates: intra- and cross-package duplicates dropped.
	Duplicates int `json:"duplicates"`
	// Invalid: messages sent to the dead-letter topic.
	Invalid int `json:"invalid"`
	// PackagesRejected: whole packages sent to the dead-letter topic (edge
	// 422 and decoder rejections after a 202).
	PackagesRejected int `json:"packages_rejected"`
	// DeadLetters: dead-letter records, one per invalid message and one
	// per rejected package.
	DeadLetters int `json:"dead_letters"`
}

func (c *Counts) add(o Counts) {
	c.Messages += o.Messages
	c.Duplicates += o.Duplicates
	c.Invalid += o.Invalid
	c.PackagesRejected += o.PackagesRejected
	c.DeadLetters += o.DeadLetters
}

// Reading is the latest reading of one type, in wire units (see
// Reading.Normal for the view's units).
type Reading struct {
	// TimeMs is the message time.
	TimeMs uint64
	// Message is the decoded message.
	Message protocol.Message
}

// Time returns the reading's time.
func (r Reading) Time() time.Time { return time.UnixMilli(int64(r.TimeMs)).UTC() }

// Normal returns the reading's fields in normal units, named as the view
// API's JSON names them: lat_deg, lon_deg, speed_kmh, heading_deg, hdop
// and satellites (version 2 GPS, whose hdop and satellites are never both
// 0 here); x_g, y_g, z_g; rpm, coolant_c, fuel_pct; code, severity;
// battery_v.
func (r Reading) Normal() map[string]float64 {
	m := &r.Message
	switch m.Type {
	case protocol.TypeGPS:
		out := map[string]float64{
			"lat_deg": float64(m.LatE7) / 1e7, "lon_deg": float64(m.LonE7) / 1e7,
			"speed_kmh": float64(m.SpeedDkmh) / 10, "heading_deg": float64(m.HeadingDeg),
		}
		if m.HdopD != 0 || m.Satellites != 0 {
			out["hdop"] = float64(m.HdopD) / 10
			out["satellites"] = float64(m.Satellites)
		}
		return out
	case protocol.TypeAccel:
		return map[string]float64{"x_g": float64(m.XMg) / 1000, "y_g": float64(m.YMg) / 1000, "z_g": float64(m.ZMg) / 1000}
	case protocol.TypeEngine:
		return map[string]float64{"rpm": float64(m.RPM), "coolant_c": float64(m.CoolantRaw) - 40, "fuel_pct": float64(m.FuelPct)}
	case protocol.TypeEvent:
		return map[string]float64{"code": float64(m.Code), "severity": float64(m.Severity)}
	case protocol.TypeBattery:
		return map[string]float64{"battery_v": float64(m.Millivolts) / 1000}
	}
	return nil
}

// StoredMessage is a message the pipeline should store.
type StoredMessage struct {
	Identity
	// Type is the message's type.
	Type protocol.MsgType
	// Message is the decoded message of its first stored copy (OffsetMs
	// and CRC are that copy's; a re-batched copy differs in both).
	Message protocol.Message
	// Received bounds when the edge received that copy (see
	// Ledger.ApplyAt; zero when unknown).
	Received Interval
}

// DeviceTruth is the expected view of one device.
type DeviceTruth struct {
	// ID is the device_id.
	ID uint64
	// Counts are exact when Uncertain is 0; otherwise the lower bounds.
	Counts
	// Max are the upper bounds (equal to Counts when Uncertain is 0).
	Max Counts
	// Uncertain counts this device's attempts whose fate is unknown; while
	// it is above 0, LastSeenMs, Latest and Stored are lower bounds too.
	Uncertain int
	// LastSeenMs is the newest stored message time (0: none stored).
	LastSeenMs uint64
	// Version is the protocol version of the device's last accepted
	// package (0 if none was accepted).
	Version uint8
	// Firmware is "major.minor" for version 2 devices once a package of
	// theirs was accepted and decoded, else "".
	Firmware string
	// FirmwareRaw is the header's firmware field behind Firmware.
	FirmwareRaw uint16
	// Latest holds the latest stored reading of each type, by message
	// time.
	Latest map[protocol.MsgType]Reading
	// Stored is the set of messages that should be stored, by identity:
	// all of them, or, with a pruning Ledger, those within its window of
	// LastSeenMs.
	Stored map[Identity]StoredMessage
	// Forgotten counts the stored messages a pruning Ledger dropped from
	// Stored; Messages is len(Stored) + Forgotten.
	Forgotten int
	// Possible holds the messages of packages whose fate is uncertain and
	// that are not in Stored: the pipeline may store them or not. A stored
	// row in neither set is one the truth does not have.
	Possible map[Identity]struct{}
	// Received bounds the edge's receive time of every package of the
	// device that reaches the normalized stream (accepted and decoded),
	// in the order the answers came (see Ledger.ApplyAt); Unclocked
	// counts those applied without times (Ledger.Apply).
	Received  []Interval
	Unclocked int

	// nextPrune is the size of Stored at which a pruning Ledger prunes.
	nextPrune int
}

// LastSeen returns LastSeenMs as a time, the zero time if nothing was
// stored.
func (d *DeviceTruth) LastSeen() time.Time {
	if d.LastSeenMs == 0 {
		return time.Time{}
	}
	return time.UnixMilli(int64(d.LastSeenMs)).UTC()
}

// Exact reports whether every count of the device is exact.
func (d *DeviceTruth) Exact() bool { return d.Uncertain == 0 }

func (d *DeviceTruth) clone() *DeviceTruth {
	c := *d
	c.Latest = maps.Clone(d.Latest)
	c.Stored = maps.Clone(d.Stored)
	c.Possible = maps.Clone(d.Possible)
	c.Received = slices.Clone(d.Received)
	return &c
}

// Truth is the ground truth of everything the edge answered.
type Truth struct {
	// Totals sums the devices' counts: exact when Uncertain is 0, lower
	// bounds otherwise.
	Totals Counts
	// Max are upper bounds of Totals.
	Max Counts
	// DeadLetters counts the expected dead-letter records by reason (a
	// package answered 422 for an unexpected reason counts under
	// "unknown"); DeadLettersMax are upper bounds.
	DeadLetters    map[string]int
	DeadLettersMax map[string]int
	// Answers counts final answers by HTTP status.
	Answers map[int]int
	// Attempts counts every request's outcome: the HTTP status, or
	// "error" for a transport failure or timeout.
	Attempts map[string]int
	// Faults counts the faults injected into packages that got a final
	// answer.
	Faults map[Fault]int
	// Sent counts packages that got a final answer; Unsent those given up
	// (retries exhausted, or the context ended while retrying).
	Sent, Unsent int
	// Offered counts every package, sent or given up, by the answer it
	// expected; AsExpected those whose final answer was the expected one,
	// by that answer. Offered[202] are the valid packages offered and
	// AsExpected[202] those accepted.
	Offered, AsExpected map[int]int
	// Uncertain counts attempts whose fate is unknown: timeouts, transport
	// failures after connecting, and 503 answers (Kafka may have taken the
	// package after all). 429 answers and failures to connect are certain
	// not to have kept anything. While it is 0, the truth is exact.
	Uncertain int
	// Unexpected counts packages whose final answer was not the expected
	// one; UnexpectedSamples describes the first few.
	Unexpected        int
	UnexpectedSamples []string
	// Devices holds the truth of every device the pipeline should know:
	// those with an accepted (202) or rejected (422) package, and those
	// with uncertain attempts (which the pipeline may or may not know).
	Devices map[uint64]*DeviceTruth
}

// Exact reports whether the truth is exact (no uncertain attempts).
func (t *Truth) Exact() bool { return t.Uncertain == 0 }

// StoredMessages returns every message that should be stored, ordered by
// device, time and content CRC.
func (t *Truth) StoredMessages() []StoredMessage {
	var out []StoredMessage
	for _, d := range t.Devices {
		for _, m := range d.Stored {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b StoredMessage) int {
		return cmp.Or(cmp.Compare(a.DeviceID, b.DeviceID), cmp.Compare(a.TimeMs, b.TimeMs), cmp.Compare(a.ContentCRC, b.ContentCRC))
	})
	return out
}

// Summary is the JSON form of a Truth's totals.
type Summary struct {
	// Exact is true when no attempt was uncertain.
	Exact      bool `json:"exact"`
	Sent       int  `json:"packages_sent"`
	Unsent     int  `json:"packages_unsent"`
	Uncertain  int  `json:"uncertain_attempts"`
	Unexpected int  `json:"unexpected_answers"`
	Devices    int  `json:"devices"`
	Counts
	// Max are the upper bounds of the counts.
	Max                 Counts         `json:"max"`
	Answers             map[string]int `json:"answers"`
	Attempts            map[string]int `json:"attempts"`
	DeadLettersByReason map[string]int `json:"dead_letters_by_reason"`
	Faults              map[Fault]int  `json:"faults"`
}

// Summary returns the truth's totals.
func (t *Truth) Summary() Summary { return t.summary() }

func (t *Truth) summary() Summary {
	s := Summary{
		Exact: t.Exact(), Sent: t.Sent, Unsent: t.Unsent, Uncertain: t.Uncertain,
		Unexpected: t.Unexpected, Devices: len(t.Devices), Counts: t.Totals, Max: t.Max,
		Answers:             make(map[string]int, len(t.Answers)),
		Attempts:            maps.Clone(t.Attempts),
		DeadLettersByReason: maps.Clone(t.DeadLetters),
		Faults:              maps.Clone(t.Faults),
	}
	for code, n := range t.Answers {
		s.Answers[strconv.Itoa(code)] = n
	}
	return s
}

func newTruth() Truth {
	return Truth{
		DeadLetters:    make(map[string]int),
		DeadLettersMax: make(map[string]int),
		Answers:        make(map[int]int),
		Attempts:       make(map[string]int),
		Faults:         make(map[Fault]int),
		Offered:        make(map[int]int),
		AsExpected:     make(map[int]int),
		Devices:        make(map[uint64]*DeviceTruth),
	}
}

func (t *Truth) clone() Truth {
	c := *t
	c.DeadLetters = maps.Clone(t.DeadLetters)
	c.DeadLettersMax = maps.Clone(t.DeadLettersMax)
	c.Answers = maps.Clone(t.Answers)
	c.Attempts = maps.Clone(t.Attempts)
	c.Faults = maps.Clone(t.Faults)
	c.Offered = maps.Clone(t.Offered)
	c.AsExpected = maps.Clone(t.AsExpected)
	c.UnexpectedSamples = slices.Clone(t.UnexpectedSamples)
	c.Devices = make(map[uint64]*DeviceTruth, len(t.Devices))
	for id, d := range t.Devices {
		c.Devices[id] = d.clone()
	}
	return c
}

// Ledger turns the edge's answers into the Truth. It is safe for
// concurrent use.
type Ledger struct {
	mu     sync.Mutex
	t      Truth
	window uint64 // ms; 0 keeps every stored message
}

// NewLedger returns an empty Ledger that keeps every stored message.
func NewLedger() *Ledger { return &Ledger{t: newTruth()} }

// NewPruningLedger returns an empty Ledger that keeps, per device, only the
// stored messages within window of the newest (the others are counted in
// DeviceTruth.Forgotten), so that its memory stays bounded on long runs.
// The window must be longer than any gap between two copies of a message,
// in message time: a Fleet's resends and re-batched messages come within
// about 70 minutes, so two hours is safe. A window of 0 keeps everything.
func NewPruningLedger(window time.Duration) *Ledger {
	return &Ledger{t: newTruth(), window: uint64(max(window, 0) / time.Millisecond)}
}

// Summary returns the truth's totals so far, without copying the stored
// messages.
func (l *Ledger) Summary() Summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.t.summary()
}

// Truth returns a deep copy of the truth so far.
func (l *Ledger) Truth() Truth {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.t.clone()
}

// Attempt counts one request's outcome: its HTTP status, or 0 for a
// transport failure or timeout. Call Apply or Unsent once per package
// besides.
func (l *Ledger) Attempt(code int) {
	key := "error"
	if code != 0 {
		key = strconv.Itoa(code)
	}
	l.mu.Lock()
	l.t.Attempts[key]++
	l.mu.Unlock()
}

func (l *Ledger) device(id uint64) *DeviceTruth {
	d := l.t.Devices[id]
	if d == nil {
		d = &DeviceTruth{ID: id, Latest: make(map[protocol.MsgType]Reading), Stored: make(map[Identity]StoredMessage)}
		l.t.Devices[id] = d
	}
	return d
}

// Apply records the final answer code to package p, after uncertain
// earlier attempts whose fate is unknown (timeouts, 503s). 202 applies
// the package's expected records (or its decoder rejection); 422 counts a
// rejected package; 400, 401, 413 and any other answer keep nothing.
// Without the request's times, the truth of silences has a hole (see
// ApplyAt).
func (l *Ledger) Apply(p *Package, code int, uncertain int) {
	l.ApplyAt(p, code, uncertain, Interval{})
}

// ApplyAt is Apply with the times of the request that got the answer:
// from when it was sent to when the answer came, which bounds the edge's
// receive time of the package (on one clock; the edge's may differ by its
// skew). With uncertain attempts before it, the stored copy may be one of
// theirs: received then bounds it from the first one's send.
func (l *Ledger) ApplyAt(p *Package, code int, uncertain int, received Interval) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := &l.t
	t.Sent++
	t.Answers[code]++
	t.Offered[p.Expect.Code]++
	for _, f := range p.Faults {
		t.Faults[f]++
	}
	if code == p.Expect.Code {
		t.AsExpected[code]++
	} else {
		t.Unexpected++
		if len(t.UnexpectedSamples) < 20 {
			t.UnexpectedSamples = append(t.UnexpectedSamples,
				fmt.Sprintf("package %d of device %d (faults %v): answered %d, expected %d", p.Seq, p.Device, p.Faults, code, p.Expect.Code))
		}
	}
	var got Counts
	var dlq map[string]int
	switch code {
	case 202:
		got, dlq = l.store(p, received)
	case 422:
		reason := "unknown"
		if p.Expect.Code == 422 {
			reason = p.Expect.Reject.String()
		}
		got = Counts{PackagesRejected: 1, DeadLetters: 1}
		dlq = map[string]int{reason: 1}
		l.device(p.Expect.Device).Counts.add(got)
	default:
		l.bound(p, uncertain, false)
		return
	}
	t.Totals.add(got)
	t.Max.add(got)
	for r, n := range dlq {
		t.DeadLetters[r] += n
		t.DeadLettersMax[r] += n
	}
	d := l.device(p.Expect.Device)
	d.Max.add(got)
	l.bound(p, uncertain, code == 202)
}

// Unsent records package p as given up, after uncertain attempts whose fate
// is unknown.
func (l *Ledger) Unsent(p *Package, uncertain int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Unsent++
	l.t.Offered[p.Expect.Code]++
	l.bound(p, uncertain, false)
}

// effect returns what one stored copy of p adds at most, besides new
// messages: every valid message counted as a duplicate.
func effect(p *Package) (c Counts, dlq map[string]int, valid int) {
	switch p.Expect.Code {
	case 202:
	case 422:
		return Counts{PackagesRejected: 1, DeadLetters: 1}, map[string]int{p.Expect.Reject.String(): 1}, 0
	default:
		return Counts{}, nil, 0 // never written to Kafka
	}
	if p.Expect.Reject != protocol.ReasonNone {
		return Counts{PackagesRejected: 1, DeadLetters: 1}, map[string]int{p.Expect.Reject.String(): 1}, 0
	}
	dlq = make(map[string]int)
	for _, r := range p.Expect.Records {
		switch r.Outcome {
		case OutcomeValid:
			valid++
			c.Duplicates++
		case OutcomeDuplicate:
			c.Duplicates++
		case OutcomeInvalid:
			c.Invalid++
			c.DeadLetters++
			dlq[r.Reason.String()]++
		}
	}
	return c, dlq, valid
}

// bound raises the upper bounds by what uncertain attempts of p may have
// added: each a stored copy, and, unless p was accepted for certain, its
// valid messages as new ones.
func (l *Ledger) bound(p *Package, uncertain int, accepted bool) {
	if uncertain <= 0 {
		return
	}
	t := &l.t
	t.Uncertain += uncertain
	c, dlq, valid := effect(p)
	var add Counts
	for range uncertain {
		add.add(c)
	}
	if !accepted {
		add.Messages += valid
	}
	t.Max.add(add)
	for r, n := range dlq {
		t.DeadLettersMax[r] += n * uncertain
	}
	if c != (Counts{}) || valid > 0 {
		d := l.device(p.Expect.Device)
		d.Uncertain += uncertain
		d.Max.add(add)
		if !accepted && valid > 0 {
			l.possible(d, p)
		}
	}
}

// possible adds the valid messages of p, whose fate is uncertain, to d's
// Possible unless they are stored.
func (l *Ledger) possible(d *DeviceTruth, p *Package) {
	for i := range p.Expect.Records {
		r := &p.Expect.Records[i]
		if r.Outcome != OutcomeValid {
			continue
		}
		id := Identity{DeviceID: d.ID, TimeMs: r.Message.TimeMs, ContentCRC: r.Message.ContentCRC}
		if _, ok := d.Stored[id]; ok {
			continue
		}
		if d.Possible == nil {
			d.Possible = make(map[Identity]struct{})
		}
		d.Possible[id] = struct{}{}
	}
}

// store applies an accepted package p, received by the edge within
// received, and returns what it added.
func (l *Ledger) store(p *Package, received Interval) (Counts, map[string]int) {
	d := l.device(p.Expect.Device)
	if p.Expect.Reject != protocol.ReasonNone {
		c := Counts{PackagesRejected: 1, DeadLetters: 1}
		d.Counts.add(c)
		return c, map[string]int{p.Expect.Reject.String(): 1}
	}
	if received.Known() {
		d.Received = append(d.Received, received)
	} else {
		d.Unclocked++
	}
	d.Version = p.Expect.Version
	if p.Expect.Version >= 2 {
		d.FirmwareRaw = p.Expect.Firmware
		d.Firmware = firmwareString(p.Expect.Version, p.Expect.Firmware)
	}
	var c Counts
	dlq := make(map[string]int)
	for i := range p.Expect.Records {
		r := &p.Expect.Records[i]
		switch r.Outcome {
		case OutcomeDuplicate:
			c.Duplicates++
		case OutcomeInvalid:
			c.Invalid++
			c.DeadLetters++
			dlq[r.Reason.String()]++
		case OutcomeValid:
			m := &r.Message
			id := Identity{DeviceID: d.ID, TimeMs: m.TimeMs, ContentCRC: m.ContentCRC}
			if _, dup := d.Stored[id]; dup {
				c.Duplicates++
				continue
			}
			c.Messages++
			d.Stored[id] = StoredMessage{Identity: id, Type: m.Type, Message: *m, Received: received}
			delete(d.Possible, id)
			d.LastSeenMs = max(d.LastSeenMs, m.TimeMs)
			if cur, ok := d.Latest[m.Type]; !ok || m.TimeMs > cur.TimeMs {
				d.Latest[m.Type] = Reading{TimeMs: m.TimeMs, Message: *m}
			}
		}
	}
	d.Counts.add(c)
	if l.window > 0 && len(d.Stored) >= d.nextPrune {
		l.prune(d)
	}
	return c, dlq
}

// prune drops the stored messages of d older than the window.
func (l *Ledger) prune(d *DeviceTruth) {
	if d.LastSeenMs > l.window {
		horizon := d.LastSeenMs - l.window
		for id := range d.Stored {
			if id.TimeMs < horizon {
				delete(d.Stored, id)
				d.Forgotten++
			}
		}
		for id := range d.Possible {
			if id.TimeMs < horizon {
				delete(d.Possible, id)
			}
		}
	}
	d.nextPrune = 2*len(d.Stored) + 1024
}
