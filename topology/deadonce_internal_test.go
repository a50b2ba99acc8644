package topology

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"testing"

	"github.com/IBM/sarama"
)

// A commit's dead-letter offset is the lowest of the floor and the bounds
// of the records at or after it; records before it are forgotten.
func TestDeadLetterMetadataBoundsRecordsAtOrAfterTheCommit(t *testing.T) {
	d := &partDeadLetters{target: 2, floor: 100, sent: []deadLetterBound{{record: 3, from: 20}, {record: 7, from: 40}}}
	for _, c := range []struct {
		upto int64
		want int64
	}{{3, 20}, {4, 40}, {8, 100}} {
		q, from, ok := parseDeadLetterMeta(d.metadata(c.upto))
		if !ok || q != 2 || from != c.want {
			t.Errorf("metadata(%d) = %d, %d, %v; want 2, %d", c.upto, q, from, ok, c.want)
		}
	}
	if len(d.sent) != 0 {
		t.Errorf("bounds of committed records kept: %v", d.sent)
	}
	for _, s := range []string{"", "other", deadLetterMetaPrefix + "x:1", deadLetterMetaPrefix + "1:-4", deadLetterMetaPrefix + "1"} {
		if _, _, ok := parseDeadLetterMeta(s); ok {
			t.Errorf("parsed %q", s)
		}
	}
}

// A replay does not write a dead letter found written before (a value cut
// to fit matches by its kept prefix and original length), and only as
// often as it was found; other dead letters of the record are written and
// bound the commit's metadata.
func TestAdmitDeadLetterSkipsWhatWasFound(t *testing.T) {
	l := &deadLetterLog{group: "g", log: slog.New(slog.DiscardHandler), seed: maphash.MakeSeed()}
	tr := &commitTracker{parts: map[topicPartition]*partCommits{}, dl: l}
	full := []byte("0123456789")
	d := &partDeadLetters{target: 0, floor: 50, found: []foundEnvelope{
		{record: 3, reason: "bad", size: len(full), written: 4, sum: maphash.Bytes(l.seed, full[:4]), errSum: maphash.String(l.seed, "second")},
		{record: 3, reason: "bad", size: len(full), written: 4, sum: maphash.Bytes(l.seed, full[:4]), errSum: maphash.String(l.seed, "first")},
	}}
	tr.part("in", 0).dl = d
	ctx := context.WithValue(context.Background(), commitsKey{}, tr)
	if admitDeadLetter(ctx, "in", 0, 3, "bad", errors.New("first"), full) {
		t.Error("the dead letter found written was written again")
	}
	if !d.found[1].reWritten {
		t.Error("the envelope with the same error text was not the one matched")
	}
	if admitDeadLetter(ctx, "in", 0, 3, "bad", errors.New("another text"), full) {
		t.Error("the dead letter found written, with another error text, was written again")
	}
	if !admitDeadLetter(ctx, "in", 0, 3, "bad", errors.New("first"), full) {
		t.Error("a third dead letter of the record, found twice, was not written")
	}
	if !admitDeadLetter(ctx, "in", 0, 3, "bad", nil, []byte("0123xxxxxx")) || !admitDeadLetter(ctx, "in", 0, 3, "other", nil, full) {
		t.Error("a different dead letter was not written")
	}
	if len(d.sent) != 3 || d.sent[0] != (deadLetterBound{record: 3, from: 50}) {
		t.Errorf("bounds %v, want three at the floor 50", d.sent)
	}
	if !admitDeadLetter(context.Background(), "in", 0, 3, "bad", nil, full) {
		t.Error("outside a session a dead letter was not written")
	}
}

// Dead letters go to their origin partition mod the partition count;
// other records by key.
func TestOriginPartitioner(t *testing.T) {
	p := originPartitioner(byTopicPartitioner(nil, Hasher))("dlq")
	m := &sarama.ProducerMessage{Topic: "dlq", Key: sarama.StringEncoder("k"),
		Headers: []sarama.RecordHeader{{Key: []byte(HeaderOriginPartition), Value: []byte("5")}}}
	if got, err := p.Partition(m, 4); err != nil || got != 1 {
		t.Errorf("origin 5 of 4 partitions: %d, %v; want 1", got, err)
	}
	plain := &sarama.ProducerMessage{Topic: "dlq", Key: sarama.StringEncoder("k")}
	want, _ := sarama.NewCustomHashPartitioner(Hasher)("dlq").Partition(plain, 4)
	if got, err := p.Partition(plain, 4); err != nil || got != want {
		t.Errorf("by key: %d, %v; want %d", got, err, want)
	}
}
