package dlq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/edge"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// Headers that Replay adds to every replayed record, replacing any of the
// same name among the original headers (a record replayed before carries
// them already). The framework honours them when it dead-letters or
// processes a replayed record; see docs/dead-letters.md.
const (
	// HeaderReplay names the dead letter the record was replayed from, as
	// "<dlq topic>/<partition>/<offset>".
	HeaderReplay = "watershed-replay"
	// HeaderAttempts holds the envelope's Attempts in decimal ASCII: the
	// attempts already spent on the record. A new dead-letter envelope of
	// the replayed record counts its own attempts on top of them.
	HeaderAttempts = topology.HeaderAttempts
	// HeaderFirstFailure holds the envelope's FirstFailure in Unix
	// milliseconds (decimal), when it is set: a new dead-letter envelope of
	// the replayed record keeps it as its FirstFailure. The retry topics
	// use the same header.
	HeaderFirstFailure = topology.HeaderFirstFailure
	// HeaderReplayGroup names the processor group whose failure is being
	// replayed. Other groups reading the same topic have processed the
	// original record already and skip the replayed one. Edge rejections
	// were never processed by anyone and carry no such header.
	HeaderReplayGroup = topology.HeaderReplayGroup
)

// Headers of the records in the replayed topic, beside the replay time in
// the value.
const (
	// markerOrigin holds "<topic>/<partition>/<offset>" of the original
	// record, when it had been written to its topic.
	markerOrigin = "watershed-origin"
	// markerTarget holds "<topic>/<partition>/<offset>" of the replayed
	// record.
	markerTarget = "watershed-replayed-to"
)

// ReplayedTopic returns the name of the compacted topic that records the
// replays of dead-letter topic dlq: one record per replayed dead letter,
// keyed "partition/offset", valued with the replay time (RFC 3339).
func ReplayedTopic(dlq string) string { return dlq + ".replayed" }

// Action is what Replay did, or would do, with one dead letter.
type Action string

// The actions of a replay.
const (
	// ActionWouldReplay: a dry run would replay the record.
	ActionWouldReplay Action = "would-replay"
	// ActionReplayed: the record was written to its topic and the replay
	// recorded.
	ActionReplayed Action = "replayed"
	// ActionAlreadyReplayed: the dead letter, or another dead letter of the
	// same original record, was replayed before; nothing is written.
	ActionAlreadyReplayed Action = "already-replayed"
	// ActionRefused: the record cannot be replayed (Detail says why).
	ActionRefused Action = "refused"
	// ActionFailed: writing the record or recording its replay failed.
	ActionFailed Action = "failed"
)

// ReplayItem is the outcome for one selected dead letter.
type ReplayItem struct {
	// Record is the dead letter.
	Record Record
	// Action is what happened to it.
	Action Action
	// Detail explains a skip, a refusal, a failure, or names the dead
	// letter that shares the record's original record.
	Detail string
	// Target is "<topic>/<partition>/<offset>" of the replayed record
	// (empty until written).
	Target string
	// ReplayedAt is when the record was replayed (now, or earlier for
	// ActionAlreadyReplayed; zero when unknown).
	ReplayedAt time.Time
}

// ReplayReport lists the outcome for every selected dead letter, in scan
// order.
type ReplayReport struct {
	// DryRun is set when nothing was written.
	DryRun bool
	// Items are the outcomes, one per selected dead letter.
	Items []ReplayItem
}

// Count returns the number of items with action a.
func (r *ReplayReport) Count(a Action) int {
	n := 0
	for _, it := range r.Items {
		if it.Action == a {
			n++
		}
	}
	return n
}

// ReplayOptions configure Replay.
type ReplayOptions struct {
	// DryRun selects and classifies the dead letters but writes nothing
	// (and creates no topic).
	DryRun bool
	// IncludeEdge replays the ingest edge's rejections (Stage "edge",
	// Partition -1) to their raw topic. They are refused by default: the
	// edge refused the package because it is malformed, and the decode
	// stage rejects it again unless the cause was a bug in the checks that
	// has been fixed.
	IncludeEdge bool
	// Topics, when not empty, are the only topics records may be replayed
	// to (the pipeline's topics); a record of any other topic is refused.
	// A topic must exist in the cluster in any case.
	Topics []string
	// MaxAttempts refuses dead letters whose Attempts reached it; 0 means
	// no limit.
	MaxAttempts int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// marker is one record of the replayed topic.
type marker struct {
	at     time.Time
	origin string
	target string
	key    string
}

// Replay replays the dead letters that f matches, each at most once over
// every run: see the package documentation. Already replayed and refused
// dead letters are reported and left alone. Dead letters that share their
// original record (the decode stage's message-level rejections of one
// package) are replayed as one record and all recorded as replayed.
//
// Every replayed record is acknowledged by all in-sync replicas before its
// replay is recorded; a crash between the two leaves a replay unrecorded,
// which a later run would repeat (its HeaderReplay tells the copies apart).
// When any write fails the report is returned with an error.
func (q *Queue) Replay(ctx context.Context, f Filter, opts ReplayOptions) (ReplayReport, error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	rep := ReplayReport{DryRun: opts.DryRun}
	done, err := q.readMarkers(ctx)
	if err != nil {
		return rep, err
	}
	byOrigin := map[string]marker{}
	for _, m := range done {
		if m.origin != "" {
			byOrigin[m.origin] = m
		}
	}
	if err := q.client.RefreshMetadata(); err != nil {
		return rep, fmt.Errorf("dlq: metadata: %w", err)
	}
	topics, err := q.client.Topics()
	if err != nil {
		return rep, fmt.Errorf("dlq: list topics: %w", err)
	}
	exists := map[string]bool{}
	for _, t := range topics {
		exists[t] = true
	}
	allowed := map[string]bool{}
	for _, t := range opts.Topics {
		allowed[t] = true
	}

	// leaders[i] is the index of the item that writes item i's record, or
	// -1 for items that write nothing.
	var leaders []int
	leaderOf := map[string]int{}
	_, err = q.Scan(ctx, f, func(r Record) error {
		it := ReplayItem{Record: r}
		lead := -1
		origin := r.Origin()
		if m, ok := done[r.Coordinates()]; ok {
			it.Action, it.ReplayedAt, it.Target = ActionAlreadyReplayed, m.at, m.target
			it.Detail = "replayed before"
		} else if why := q.refusal(&r, opts, exists, allowed); why != "" {
			it.Action, it.Detail = ActionRefused, why
		} else if m, ok := byOrigin[origin]; ok && origin != "" {
			it.Action, it.ReplayedAt, it.Target = ActionAlreadyReplayed, m.at, m.target
			it.Detail = fmt.Sprintf("its original record %s was replayed before from dead letter %s", origin, m.key)
		} else if i, ok := leaderOf[origin]; ok && origin != "" {
			it.Action, lead = ActionWouldReplay, i
			it.Detail = fmt.Sprintf("same original record %s as dead letter %s: written once", origin, rep.Items[i].Record.Coordinates())
		} else {
			it.Action, lead = ActionWouldReplay, len(rep.Items)
			if origin != "" {
				leaderOf[origin] = lead
			}
		}
		rep.Items = append(rep.Items, it)
		leaders = append(leaders, lead)
		return nil
	})
	if err != nil {
		return rep, err
	}
	if opts.DryRun {
		return rep, nil
	}
	var todo []int
	for i, l := range leaders {
		if l == i {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return rep, nil
	}
	if err := q.ensureReplayedTopic(ctx); err != nil {
		return rep, err
	}
	producer, err := sarama.NewSyncProducer(q.k.Brokers, kafkaclient.ProducerConfig(q.k))
	if err != nil {
		return rep, fmt.Errorf("dlq: producer: %w", err)
	}
	defer producer.Close()

	// Write the records and wait for every acknowledgement.
	at := now().UTC()
	msgs := make([]*sarama.ProducerMessage, 0, len(todo))
	for _, i := range todo {
		msgs = append(msgs, q.replayMessage(&rep.Items[i].Record, at, i))
	}
	failed := map[int]error{}
	var firstErr error
	if err := producer.SendMessages(msgs); err != nil {
		var perrs sarama.ProducerErrors
		if !errors.As(err, &perrs) {
			return rep, fmt.Errorf("dlq: replay: %w", err)
		}
		for _, pe := range perrs {
			failed[pe.Msg.Metadata.(int)] = pe.Err
			if firstErr == nil {
				firstErr = pe.Err
			}
		}
	}
	for _, m := range msgs {
		i := m.Metadata.(int)
		if _, bad := failed[i]; !bad {
			rep.Items[i].Target = m.Topic + "/" + coordinates(m.Partition, m.Offset)
		}
	}

	// Record the replays of every written record's dead letters.
	var marks []*sarama.ProducerMessage
	for i, l := range leaders {
		if l < 0 {
			continue
		}
		it := &rep.Items[i]
		if err, bad := failed[l]; bad {
			it.Action, it.Detail = ActionFailed, "write failed: "+err.Error()
			continue
		}
		it.Target, it.ReplayedAt = rep.Items[l].Target, at
		marks = append(marks, q.markerMessage(it, at, i))
	}
	if err := producer.SendMessages(marks); err != nil {
		var perrs sarama.ProducerErrors
		if !errors.As(err, &perrs) {
			return rep, fmt.Errorf("dlq: record replays in %s: %w", ReplayedTopic(q.topic), err)
		}
		for _, pe := range perrs {
			it := &rep.Items[pe.Msg.Metadata.(int)]
			it.Action = ActionFailed
			it.Detail = fmt.Sprintf("written to %s but its replay was not recorded (a later replay would repeat it): %v", it.Target, pe.Err)
			if firstErr == nil {
				firstErr = pe.Err
			}
		}
	}
	for i := range rep.Items {
		if leaders[i] >= 0 && rep.Items[i].Action == ActionWouldReplay {
			rep.Items[i].Action = ActionReplayed
		}
	}
	if firstErr != nil {
		selected := 0
		for _, l := range leaders {
			if l >= 0 {
				selected++
			}
		}
		return rep, fmt.Errorf("dlq: %d of %d replays failed: %w", rep.Count(ActionFailed), selected, firstErr)
	}
	return rep, nil
}

// refusal returns why r cannot be replayed, or "".
func (q *Queue) refusal(r *Record, opts ReplayOptions, exists, allowed map[string]bool) string {
	e := &r.Envelope
	switch {
	case e.Topic == "":
		return "the envelope names no original topic"
	case strings.HasSuffix(e.Stage, topology.StageSuffixTimer) || strings.HasSuffix(e.Stage, topology.StageSuffixWindow):
		return fmt.Sprintf("a timer that failed as it fired or a window whose close failed (stage %s): its value is the timer's or the aggregate, not a record of %s", e.Stage, e.Topic)
	case e.Topic == q.topic || e.Topic == ReplayedTopic(q.topic):
		return fmt.Sprintf("the original topic %s is the dead-letter topic", e.Topic)
	case len(allowed) > 0 && !allowed[e.Topic]:
		return fmt.Sprintf("the original topic %s is not a topic of the pipeline as configured (a stage fused into the next has no input topic)", e.Topic)
	case !exists[e.Topic]:
		return fmt.Sprintf("the original topic %s does not exist", e.Topic)
	case truncated(e) != "":
		return fmt.Sprintf("the value was cut to fit the dead-letter topic (%d of %s bytes kept): it is not the original record", len(e.Value), truncated(e))
	case e.Partition < 0 && !opts.IncludeEdge:
		return fmt.Sprintf("an edge rejection: the package never reached %s and the decode stage would reject it again (--include-edge replays it anyway)", e.Topic)
	case opts.MaxAttempts > 0 && e.Attempts >= opts.MaxAttempts:
		return fmt.Sprintf("%d attempts reached the limit of %d", e.Attempts, opts.MaxAttempts)
	}
	return ""
}

// truncated returns the original value length an envelope cut to fit
// records, or "" when it was not cut.
func truncated(e *records.Envelope) string {
	for _, h := range e.Headers {
		if h.Key == topology.HeaderValueTruncated {
			return string(h.Value)
		}
	}
	return ""
}

// replayMessage returns the record that replays r, with index i as its
// metadata.
func (q *Queue) replayMessage(r *Record, at time.Time, i int) *sarama.ProducerMessage {
	e := &r.Envelope
	var hs []sarama.RecordHeader
	for _, h := range e.Headers {
		switch h.Key {
		case HeaderReplay, HeaderAttempts, HeaderFirstFailure, HeaderReplayGroup:
			continue
		}
		hs = append(hs, sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
	}
	hs = append(hs,
		sarama.RecordHeader{Key: []byte(HeaderReplay), Value: []byte(q.topic + "/" + r.Coordinates())},
		sarama.RecordHeader{Key: []byte(HeaderAttempts), Value: []byte(strconv.Itoa(e.Attempts))},
	)
	if !e.FirstFailure.IsZero() {
		hs = append(hs, sarama.RecordHeader{Key: []byte(HeaderFirstFailure), Value: []byte(strconv.FormatInt(e.FirstFailure.UnixMilli(), 10))})
	}
	if e.Stage != "" && e.Stage != edge.Stage {
		hs = append(hs, sarama.RecordHeader{Key: []byte(HeaderReplayGroup), Value: []byte(e.Stage)})
	}
	m := &sarama.ProducerMessage{Topic: e.Topic, Headers: hs, Timestamp: at, Metadata: i}
	if e.Key != nil {
		m.Key = sarama.ByteEncoder(e.Key)
	}
	if e.Value != nil {
		m.Value = sarama.ByteEncoder(e.Value)
	}
	return m
}

// markerMessage returns the replayed-topic record of item it.
func (q *Queue) markerMessage(it *ReplayItem, at time.Time, i int) *sarama.ProducerMessage {
	hs := []sarama.RecordHeader{{Key: []byte(markerTarget), Value: []byte(it.Target)}}
	if o := it.Record.Origin(); o != "" {
		hs = append(hs, sarama.RecordHeader{Key: []byte(markerOrigin), Value: []byte(o)})
	}
	return &sarama.ProducerMessage{
		Topic:    ReplayedTopic(q.topic),
		Key:      sarama.StringEncoder(it.Record.Coordinates()),
		Value:    sarama.StringEncoder(at.Format(time.RFC3339Nano)),
		Headers:  hs,
		Metadata: i,
	}
}

// readMarkers reads the replayed topic, if it exists, into a map from
// dead-letter coordinates to their replay. A tombstone forgets a replay.
func (q *Queue) readMarkers(ctx context.Context) (map[string]marker, error) {
	out := map[string]marker{}
	name := ReplayedTopic(q.topic)
	if err := q.client.RefreshMetadata(); err != nil {
		return nil, fmt.Errorf("dlq: metadata: %w", err)
	}
	topics, err := q.client.Topics()
	if err != nil {
		return nil, fmt.Errorf("dlq: list topics: %w", err)
	}
	found := false
	for _, t := range topics {
		found = found || t == name
	}
	if !found {
		return out, nil
	}
	err = scanTopic(ctx, q.client, q.consumer, name, func(m *sarama.ConsumerMessage) error {
		key := string(m.Key)
		if m.Value == nil {
			delete(out, key)
			return nil
		}
		mk := marker{key: key}
		if t, err := time.Parse(time.RFC3339Nano, string(m.Value)); err == nil {
			mk.at = t
		}
		for _, h := range m.Headers {
			switch string(h.Key) {
			case markerOrigin:
				mk.origin = string(h.Value)
			case markerTarget:
				mk.target = string(h.Value)
			}
		}
		out[key] = mk
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dlq: read replays: %w", err)
	}
	return out, nil
}

// ensureReplayedTopic creates the compacted replayed topic when it is
// missing and waits until its partition is known.
func (q *Queue) ensureReplayedTopic(ctx context.Context) error {
	name := ReplayedTopic(q.topic)
	admin, err := sarama.NewClusterAdmin(q.k.Brokers, kafkaclient.Config(q.k))
	if err != nil {
		return fmt.Errorf("dlq: connect to %v: %w", q.k.Brokers, err)
	}
	defer admin.Close()
	repl := q.k.Replication
	if repl < 1 {
		repl = 1
	}
	compact := "compact"
	err = admin.CreateTopic(name, &sarama.TopicDetail{
		NumPartitions:     1,
		ReplicationFactor: repl,
		ConfigEntries:     map[string]*string{"cleanup.policy": &compact},
	}, false)
	if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		return fmt.Errorf("dlq: create %s: %w", name, err)
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		_ = q.client.RefreshMetadata(name)
		if ps, err := q.client.Partitions(name); err == nil && len(ps) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dlq: wait for %s: %w", name, ctx.Err())
		case <-t.C:
		}
	}
}
