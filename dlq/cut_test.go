package dlq

import (
	"strings"
	"testing"

	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/topology"
)

// A dead letter whose value was cut to fit the dead-letter topic is not
// replayed: its value is not the original record's.
func TestReplayRefusesCutEnvelope(t *testing.T) {
	q := &Queue{topic: testDLQ}
	r := &Record{Envelope: records.Envelope{Stage: "t.decode", Reason: "record_len", Topic: testRaw, Partition: 0, Offset: 7,
		Key: []byte("42"), Value: []byte("prefix"),
		Headers: []records.Header{{Key: topology.HeaderValueTruncated, Value: []byte("3145728")}}}}
	exists := map[string]bool{testRaw: true}
	if why := q.refusal(r, ReplayOptions{}, exists, nil); !strings.Contains(why, "cut to fit") || !strings.Contains(why, "6 of 3145728") {
		t.Errorf("refusal = %q", why)
	}
	r.Envelope.Headers = nil
	if why := q.refusal(r, ReplayOptions{}, exists, nil); why != "" {
		t.Errorf("a whole envelope refused: %q", why)
	}
}

// The dead letter of a timer or a window close is not replayed: its value
// is the timer's or the aggregate, not a record of its topic.
func TestReplayRefusesTimerAndWindowDeadLetters(t *testing.T) {
	q := &Queue{topic: testDLQ}
	exists := map[string]bool{"g-timers": true, "g-aggregate-windows": true}
	for _, e := range []records.Envelope{
		{Stage: "g" + topology.StageSuffixTimer, Reason: "panic", Topic: "g-timers", Key: []byte("k"), Value: []byte("v")},
		{Stage: "g" + topology.StageSuffixWindow, Reason: "panic", Topic: "g-aggregate-windows", Key: []byte("k"), Value: []byte("1")},
	} {
		if why := q.refusal(&Record{Envelope: e}, ReplayOptions{}, exists, nil); !strings.Contains(why, "not a record") {
			t.Errorf("%s: refusal = %q", e.Stage, why)
		}
	}
}
