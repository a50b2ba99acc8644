package topology

import (
	"slices"
	"testing"

	"github.com/IBM/sarama"
)

// markLog is the part of a sarama session the commit order uses: it
// records the marks forwarded to it.
type markLog struct {
	sarama.ConsumerGroupSession
	marks []int64
}

func (m *markLog) MarkOffset(_ string, _ int32, offset int64, _ string) {
	m.marks = append(m.marks, offset)
}

// Marks reach sarama only for the settled prefix of a partition: a record
// that settles early waits for the ones before it, a record that never
// settles holds back every later one, and marks of records no callback
// registered (goka's nil values) settle only themselves.
func TestOrderedCommitsForwardTheSettledPrefix(t *testing.T) {
	real := &markLog{}
	tr := &commitTracker{parts: map[topicPartition]*partCommits{}}
	s := &orderedSession{ConsumerGroupSession: real, tr: tr}
	p := tr.part("in", 0)
	for off := int64(10); off < 16; off++ {
		p.register(off)
	}
	steps := []struct {
		mark int64 // the record goka marks (its offset, not the next)
		want []int64
	}{
		{11, []int64{10}},         // 10 still pending: nothing past it
		{10, []int64{10, 12}},     // 10 and 11 settled
		{13, []int64{10, 12}},     // 12 pending: held
		{15, []int64{10, 12}},     // 12, 14 pending
		{12, []int64{10, 12, 14}}, // 14 still pending
		{14, []int64{10, 12, 14, 16}},
	}
	for _, st := range steps {
		s.MarkOffset("in", 0, st.mark+1, "")
		if !slices.Equal(real.marks, st.want) {
			t.Fatalf("after marking %d, forwarded %v, want %v", st.mark, real.marks, st.want)
		}
	}

	// A record with a nil value (marked without a callback) behind a
	// pending one does not pass it; once nothing is pending its mark goes
	// through.
	p.register(17)
	s.MarkOffset("in", 0, 17, "") // 16: unregistered
	if want := []int64{10, 12, 14, 16, 17}; !slices.Equal(real.marks, want) {
		t.Fatalf("forwarded %v, want %v", real.marks, want)
	}
	s.MarkOffset("in", 0, 19, "") // 18: unregistered, 17 pending
	if want := []int64{10, 12, 14, 16, 17}; !slices.Equal(real.marks, want) {
		t.Fatalf("a nil record's mark passed a pending one: %v", real.marks)
	}
	s.MarkOffset("in", 0, 18, "")
	if want := []int64{10, 12, 14, 16, 17, 19}; !slices.Equal(real.marks, want) {
		t.Fatalf("forwarded %v, want %v", real.marks, want)
	}

	// Partitions are independent.
	tr.part("in", 1).register(0)
	s.MarkOffset("in", 1, 1, "")
	if n := len(real.marks); real.marks[n-1] != 1 {
		t.Errorf("partition 1's mark not forwarded: %v", real.marks)
	}
}

// The cost ordered commits add to each record: its registration and its
// mark, settling in order.
func BenchmarkOrderedCommits(b *testing.B) {
	real := &markLog{}
	tr := &commitTracker{parts: map[topicPartition]*partCommits{}}
	s := &orderedSession{ConsumerGroupSession: real, tr: tr}
	for i := range b.N {
		off := int64(i)
		tr.part("in", 0).register(off)
		s.MarkOffset("in", 0, off+1, "")
		if len(real.marks) > 1024 {
			real.marks = real.marks[:0]
		}
	}
}

// BenchmarkOrderedCommitsDeadLetters is BenchmarkOrderedCommits with the
// commit metadata of dead-letters-once (deadonce.go) against without, in
// one run: "plain" is a group without it; "once" marks each record with
// the partition's metadata (reused while its offset holds); "once-moving"
// also moves the floor every 1,000 records (the read of the partition's
// end, every 5 s in a run) and notes a dead letter every 100 records, so
// that the metadata is rebuilt often.
func BenchmarkOrderedCommitsDeadLetters(b *testing.B) {
	for _, c := range []struct {
		name       string
		once       bool
		moveEvery  int64
		deadLetter int64
	}{{"plain", false, 0, 0}, {"once", true, 0, 0}, {"once-moving", true, 1000, 100}} {
		b.Run(c.name, func(b *testing.B) {
			real := &markLog{}
			tr := &commitTracker{parts: map[topicPartition]*partCommits{}}
			s := &orderedSession{ConsumerGroupSession: real, tr: tr}
			p := tr.part("in", 0)
			if c.once {
				p.dl = &partDeadLetters{target: 0, floor: 1}
			}
			off := int64(0)
			for b.Loop() {
				p.register(off)
				if c.moveEvery > 0 {
					p.mu.Lock()
					if off%c.moveEvery == 0 {
						p.dl.floor = off
					}
					if off%c.deadLetter == 0 {
						p.dl.sent = append(p.dl.sent, deadLetterBound{record: off, from: p.dl.floor})
					}
					p.mu.Unlock()
				}
				s.MarkOffset("in", 0, off+1, "")
				if len(real.marks) > 1024 {
					real.marks = real.marks[:0]
				}
				off++
			}
		})
	}
}
