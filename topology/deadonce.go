package topology

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/watershed-io/watershed/topology/deadletter"
)

// Dead letters once across replays.
//
// A record is replayed when its partition's commit did not reach the group
// coordinator before a crash, a restart or a rebalance; its dead letters,
// already acknowledged, would be written again. Kafka transactions would
// tie the two writes together, but goka has none. Instead each commit of an
// input partition carries, as its metadata, a dead-letter offset below
// which no envelope of a record at or after the committed offset lies, and
// the envelopes of input partition p all go to dead-letter partition
// p mod n (HeaderOriginPartition). A session that takes the partition reads
// that dead-letter partition from the recorded offset to its end, keeps the
// envelopes of this group and input partition at or after the committed
// offset, and does not write them again when the replay dead-letters the
// same record with the same reason and value. The read covers what the
// dead-letter partition received since about the last commit.
//
// The recorded offset is the lowest of the partition's floor (no record
// sent from now on lands below it: the partition's end, read when the
// session starts and every deadLetterFloorEvery since, or so) and, for
// every record at or after the commit that wrote or found an envelope in
// this session, the floor when it wrote it or the offset where it was
// found. Before a session processes a record, it commits its starting
// offset with such metadata, so every record ever processed is covered.
//
// What remains: a replica cut off from the group but still writing to the
// dead-letter partition after its successor read it (longer than the
// session time-out, or goka's 60 s wait for a revoked partition's records)
// can still add a copy, as can changing the dead-letter topic's partition
// count. Envelopes written before a partition's first such commit (older
// versions) are not known.

// HeaderOriginPartition is a dead-letter record's header: the partition of
// the input record it comes from (decimal). The producer puts the record in
// dead-letter partition origin mod partitions, where a replay finds it.
const HeaderOriginPartition = "watershed-origin-partition"

// deadLetterMetaPrefix starts the commit metadata this file writes:
// "watershed-dl/1:<dead-letter partition>:<offset>".
const deadLetterMetaPrefix = "watershed-dl/1:"

// deadLetterFloorEvery is how often a session reads the ends of its
// dead-letter partitions, which bounds what the next owner reads back.
const deadLetterFloorEvery = 5 * time.Second

// deadLetterReadTimeout bounds the read of a dead-letter partition when a
// session starts; past it the session fails and is started again.
const deadLetterReadTimeout = time.Minute

// deadLetterLog gives the sessions of one consumer group what they need to
// write each dead letter once.
type deadLetterLog struct {
	client sarama.Client
	group  string
	// topic is the dead-letter topic.
	topic string
	log   *slog.Logger
	seed  maphash.Seed
}

// newOrderedGroup returns the consumer group of group on client whose
// sessions commit in order and write each dead letter to topic once. It
// closes client when closed.
func newOrderedGroup(client sarama.Client, group, deadLetterTopic string, log *slog.Logger) (sarama.ConsumerGroup, error) {
	cg, err := sarama.NewConsumerGroupFromClient(group, client)
	if err != nil {
		return nil, errors.Join(err, client.Close())
	}
	return orderedGroup{ConsumerGroup: cg, dl: &deadLetterLog{client: client, group: group, topic: deadLetterTopic,
		log: log, seed: maphash.MakeSeed()}}, nil
}

// Close closes the group and its client.
func (g orderedGroup) Close() error {
	err := g.ConsumerGroup.Close()
	if g.dl != nil {
		err = errors.Join(err, g.dl.client.Close())
	}
	return err
}

// partDeadLetters is what a session knows of the dead letters of one input
// partition; its partCommits' mutex guards it.
type partDeadLetters struct {
	// target is the dead-letter partition of the input partition.
	target int32
	// floor is an offset of target below which no envelope sent from now
	// on can land.
	floor int64
	// sent holds, for the records not yet committed that wrote or found
	// an envelope, the lowest offset of target it may have.
	sent []deadLetterBound
	// found are the envelopes of records not yet committed, read when the
	// session started: their replays do not write them again.
	found []foundEnvelope
	// meta and metaFrom are the last metadata written and its offset:
	// most commits repeat it, and a commit is marked per record.
	meta     string
	metaFrom int64
}

type deadLetterBound struct{ record, from int64 }

// foundEnvelope identifies an envelope by its record, reason and value (a
// hash of the value as written, which may be cut to fit, and the length
// of the original), and its error text's hash.
type foundEnvelope struct {
	record    int64
	reason    string
	size      int
	written   int
	sum       uint64
	errSum    uint64
	reWritten bool
}

// metadata returns the commit metadata of the partition committed up to
// upto (the next offset to read), and forgets the records before it.
func (d *partDeadLetters) metadata(upto int64) string {
	from := d.floor
	kept := d.sent[:0]
	for _, b := range d.sent {
		if b.record >= upto {
			kept = append(kept, b)
			from = min(from, b.from)
		}
	}
	d.sent = kept
	found := d.found[:0]
	for _, f := range d.found {
		if f.record >= upto {
			found = append(found, f)
		}
	}
	d.found = found
	if d.meta == "" || d.metaFrom != from {
		d.meta, d.metaFrom = deadLetterMetaPrefix+strconv.Itoa(int(d.target))+":"+strconv.FormatInt(from, 10), from
	}
	return d.meta
}

// parseDeadLetterMeta reads commit metadata written by metadata.
func parseDeadLetterMeta(s string) (target int32, from int64, ok bool) {
	rest, ok := strings.CutPrefix(s, deadLetterMetaPrefix)
	if !ok {
		return 0, 0, false
	}
	a, b, ok := strings.Cut(rest, ":")
	t, err1 := strconv.ParseInt(a, 10, 32)
	f, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || t < 0 || f < 0 {
		return 0, 0, false
	}
	return int32(t), f, true
}

// admitDeadLetter reports whether a dead letter of the record at offset
// of topic/partition, handled in ctx's session, is to be written: false
// when the session found it written before (the record is replayed). A
// found envelope matches once, by reason and value, one with the same
// error text first (the decode stage's dead letters of one package share
// the package as value; an error text may differ on a replay). A written
// one is remembered until the record commits. Outside a session of an
// orderedGroup every dead letter is written.
func admitDeadLetter(ctx context.Context, topic string, partition int32, offset int64, reason string, err error, value []byte) bool {
	tr, ok := ctx.Value(commitsKey{}).(*commitTracker)
	if !ok || tr.dl == nil {
		return true
	}
	p := tr.part(topic, partition)
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.dl
	if d == nil {
		return true
	}
	errSum := maphash.String(tr.dl.seed, errorText(err))
	for _, sameError := range []bool{true, false} {
		for i := range d.found {
			f := &d.found[i]
			if f.reWritten || f.record != offset || f.reason != reason || f.size != len(value) || f.written > len(value) ||
				sameError && f.errSum != errSum {
				continue
			}
			if maphash.Bytes(tr.dl.seed, value[:f.written]) == f.sum {
				f.reWritten = true
				tr.dl.log.Info("dead letter written before this replay; not written again", "group", tr.dl.group,
					"topic", topic, "partition", partition, "offset", offset, "reason", reason)
				return false
			}
		}
	}
	d.sent = append(d.sent, deadLetterBound{record: offset, from: d.floor})
	return true
}

// errorText is the error text of an envelope of err.
func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// originHeader is the header that places a dead letter of a record of
// partition in its dead-letter partition.
func originHeader(partition int32) Header {
	return Header{Key: HeaderOriginPartition, Value: []byte(strconv.Itoa(int(partition)))}
}

// originPartitioner partitions records by key with byKey, except those
// with HeaderOriginPartition, which go to that partition mod the count.
func originPartitioner(byKey sarama.PartitionerConstructor) sarama.PartitionerConstructor {
	return func(topic string) sarama.Partitioner { return originPartition{byKey(topic)} }
}

type originPartition struct{ sarama.Partitioner }

func (o originPartition) Partition(m *sarama.ProducerMessage, n int32) (int32, error) {
	for _, h := range m.Headers {
		if string(h.Key) != HeaderOriginPartition {
			continue
		}
		if p, err := strconv.ParseInt(string(h.Value), 10, 32); err == nil && p >= 0 {
			return int32(p) % n, nil
		}
	}
	return o.Partitioner.Partition(m, n)
}

func (originPartition) RequiresConsistency() bool { return true }

// claimState is what setup learns of one claimed input partition.
type claimState struct {
	topic     string
	partition int32
	committed int64 // -1: none
	from      int64 // where to read target from; -1: nothing to read
	d         *partDeadLetters
}

// setup prepares the dead letters of a session's claims before it
// processes any record: it reads back the envelopes its replays must not
// write again, and commits each partition's starting offset with metadata.
func (l *deadLetterLog) setup(s sarama.ConsumerGroupSession, tr *commitTracker) error {
	if len(s.Claims()) == 0 {
		return nil // a member with no partition (more members than partitions)
	}
	ctx, cancel := context.WithTimeout(s.Context(), deadLetterReadTimeout)
	defer cancel()
	parts, err := l.client.Partitions(l.topic)
	if err != nil {
		return fmt.Errorf("topology: dead-letter topic %s: %w", l.topic, err)
	}
	n := int32(len(parts))
	if n == 0 {
		return fmt.Errorf("topology: dead-letter topic %s has no partitions", l.topic)
	}
	committed, err := l.committed(s.Claims())
	if err != nil {
		return err
	}
	ends := map[int32]int64{}
	var claims []*claimState
	for topic, ps := range s.Claims() {
		for _, p := range ps {
			q := p % n
			if _, ok := ends[q]; !ok {
				if ends[q], err = l.client.GetOffset(l.topic, q, sarama.OffsetNewest); err != nil {
					return fmt.Errorf("topology: end of %s/%d: %w", l.topic, q, err)
				}
			}
			blk := committed.GetBlock(topic, p)
			c := &claimState{topic: topic, partition: p, committed: -1, from: -1, d: &partDeadLetters{target: q, floor: ends[q]}}
			if blk != nil {
				c.committed = blk.Offset
				if t, from, ok := parseDeadLetterMeta(blk.Metadata); ok && t == q && c.committed >= 0 {
					c.from = from
				} else if c.committed >= 0 {
					l.log.Warn("committed offset carries no dead-letter offset; dead letters of replayed records may be written again",
						"group", l.group, "topic", topic, "partition", p)
				}
			}
			claims = append(claims, c)
		}
	}
	for q, end := range ends {
		if err := l.readBack(ctx, q, end, claims); err != nil {
			return err
		}
	}
	for _, c := range claims {
		pc := tr.part(c.topic, c.partition)
		pc.mu.Lock()
		pc.dl = c.d
		start := c.committed
		if start < 0 {
			// Nothing committed yet: commit where the group starts
			// (Config: the oldest offset), so that even the first records
			// are covered.
			if start, err = l.client.GetOffset(c.topic, c.partition, sarama.OffsetOldest); err != nil {
				pc.mu.Unlock()
				return fmt.Errorf("topology: start of %s/%d: %w", c.topic, c.partition, err)
			}
			s.MarkOffset(c.topic, c.partition, start, c.d.metadata(start))
		} else {
			s.ResetOffset(c.topic, c.partition, start, c.d.metadata(start))
		}
		pc.forwarded = start
		pc.mu.Unlock()
	}
	s.Commit()
	return nil
}

// committed fetches the committed offsets and metadata of claims.
func (l *deadLetterLog) committed(claims map[string][]int32) (*sarama.OffsetFetchResponse, error) {
	coord, err := l.client.Coordinator(l.group)
	if err != nil {
		return nil, fmt.Errorf("topology: coordinator of %s: %w", l.group, err)
	}
	resp, err := coord.FetchOffset(sarama.NewOffsetFetchRequest(l.client.Config().Version, l.group, claims))
	if err != nil {
		return nil, fmt.Errorf("topology: committed offsets of %s: %w", l.group, err)
	}
	if resp.Err != sarama.ErrNoError {
		return nil, fmt.Errorf("topology: committed offsets of %s: %w", l.group, resp.Err)
	}
	for topic, ps := range claims {
		for _, p := range ps {
			if blk := resp.GetBlock(topic, p); blk != nil && blk.Err != sarama.ErrNoError {
				return nil, fmt.Errorf("topology: committed offset of %s on %s/%d: %w", l.group, topic, p, blk.Err)
			}
		}
	}
	return resp, nil
}

// readBack reads dead-letter partition q up to end from the lowest offset
// its claims recorded, and gives each claim the envelopes of its records
// at or after its committed offset.
func (l *deadLetterLog) readBack(ctx context.Context, q int32, end int64, claims []*claimState) error {
	from := int64(-1)
	for _, c := range claims {
		if c.d.target == q && c.from >= 0 && (from < 0 || c.from < from) {
			from = c.from
		}
	}
	if from < 0 || from >= end {
		return nil
	}
	consumer, err := sarama.NewConsumerFromClient(l.client)
	if err != nil {
		return fmt.Errorf("topology: read %s/%d: %w", l.topic, q, err)
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(l.topic, q, from)
	if errors.Is(err, sarama.ErrOffsetOutOfRange) {
		pc, err = consumer.ConsumePartition(l.topic, q, sarama.OffsetOldest)
	}
	if err != nil {
		return fmt.Errorf("topology: read %s/%d from %d: %w", l.topic, q, from, err)
	}
	defer pc.Close()
	read := 0
	for {
		select {
		case m := <-pc.Messages():
			read++
			l.take(m, claims)
			if m.Offset+1 >= end {
				l.log.Info("dead letters read back", "group", l.group, "partition", q, "from", from, "to", end, "records", read)
				return nil
			}
		case err := <-pc.Errors():
			return fmt.Errorf("topology: read %s/%d: %w", l.topic, q, err)
		case <-ctx.Done():
			return fmt.Errorf("topology: read %s/%d from %d to %d: %w", l.topic, q, from, end, ctx.Err())
		}
	}
}

// take gives the envelope m to the claim it belongs to, if any.
func (l *deadLetterLog) take(m *sarama.ConsumerMessage, claims []*claimState) {
	e, err := deadletter.Codec{}.Decode(m.Value)
	if err != nil || e.Stage != l.group {
		return
	}
	for _, c := range claims {
		if c.topic != e.Topic || c.partition != e.Partition || c.from < 0 || e.Offset < c.committed || m.Partition != c.d.target {
			continue
		}
		size := len(e.Value)
		for _, h := range e.Headers {
			if h.Key == HeaderValueTruncated {
				if n, err := strconv.Atoi(string(h.Value)); err == nil {
					size = n
				}
			}
		}
		c.d.found = append(c.d.found, foundEnvelope{record: e.Offset, reason: e.Reason, size: size, written: len(e.Value),
			sum: maphash.Bytes(l.seed, e.Value), errSum: maphash.String(l.seed, e.Error)})
		c.d.sent = append(c.d.sent, deadLetterBound{record: e.Offset, from: m.Offset})
	}
}

// raiseFloors reads the ends of the session's dead-letter partitions every
// deadLetterFloorEvery until it ends, raises the floors of its partitions,
// and commits the metadata of those that did not move anew, so that the
// next owner reads back little.
func (l *deadLetterLog) raiseFloors(s sarama.ConsumerGroupSession, tr *commitTracker) {
	t := time.NewTicker(deadLetterFloorEvery)
	defer t.Stop()
	for {
		select {
		case <-s.Context().Done():
			return
		case <-t.C:
		}
		tr.mu.Lock()
		parts := make(map[topicPartition]*partCommits, len(tr.parts))
		for k, p := range tr.parts {
			parts[k] = p
		}
		tr.mu.Unlock()
		ends := map[int32]int64{}
		for k, p := range parts {
			p.mu.Lock()
			d := p.dl
			p.mu.Unlock()
			if d == nil {
				continue
			}
			q := d.target
			end, ok := ends[q]
			if !ok {
				var err error
				if end, err = l.client.GetOffset(l.topic, q, sarama.OffsetNewest); err != nil {
					l.log.Debug("end of a dead-letter partition unavailable", "partition", q, "err", err)
					continue
				}
				ends[q] = end
			}
			p.mu.Lock()
			if end > d.floor {
				d.floor = end
				if s.Context().Err() == nil {
					s.ResetOffset(k.topic, k.partition, p.forwarded, d.metadata(p.forwarded))
				}
			}
			p.mu.Unlock()
		}
	}
}
