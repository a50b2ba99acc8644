package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/IBM/sarama"

	"github.com/watershed-io/watershed/assembly"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// tailLine is one record as `watershed tail` prints it.
type tailLine struct {
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Timestamp time.Time `json:"timestamp"`
	Key       string    `json:"key"`
	// Value is the decoded value; null for a table's deletion.
	Value any `json:"value"`
	// ValueHex is the value of a topic whose codec is the framework's own
	// (a loop or retry topic).
	ValueHex string `json:"value_hex,omitempty"`
}

// runTail implements `watershed tail TOPIC`: the records of any declared
// topic as JSON lines, decoded with the topic's declared codec. A record
// that does not decode is an error line on stderr, and tail goes on.
func runTail(ctx context.Context, reg *assembly.Registry, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("tail", "tail --brokers B [--from-beginning] [--max N] [--timeout D] [flags] TOPIC", stderr)
	fromBeginning := fs.Bool("from-beginning", false, "start at each partition's oldest record (default: only records written from now on)")
	maxRecords := fs.Int("max", 0, "stop after this many records (0: no limit)")
	timeout := fs.Duration("timeout", 0, "stop when no record came for this long (0: follow until interrupted); with --max, fewer records than it by then exits 1")
	var sf settingsFlags
	var kf kafkaFlags
	sf.register(fs, reg)
	kf.register(fs)
	// Flags may come before and after the topic.
	var topicArgs []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		topicArgs = append(topicArgs, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(topicArgs) != 1 {
		fmt.Fprintln(stderr, "watershed tail: want one TOPIC after the flags")
		fs.Usage()
		return 2
	}
	if *maxRecords < 0 || *timeout < 0 {
		fmt.Fprintln(stderr, "watershed tail: --max and --timeout must not be negative")
		return 2
	}
	a, err := sf.build(nil)
	if err != nil {
		fmt.Fprintf(stderr, "watershed tail: %v\n", err)
		return 2
	}
	topic, err := a.Topic(topicArgs[0])
	if err != nil {
		fmt.Fprintf(stderr, "watershed tail: %v\n", err)
		return 2
	}
	if topic.Decode == nil {
		fmt.Fprintf(stderr, "watershed tail: %s is the framework's own topic (a loop or retry topic) without a declared codec: values are shown in hex\n", topic.Name)
	}
	k, err := kf.kafka(newLogger(stderr))
	if err != nil {
		fmt.Fprintf(stderr, "watershed tail: %v\n", err)
		return 2
	}
	cfg := kafkaclient.Config(k)
	cfg.Consumer.MaxWaitTime = 50 * time.Millisecond
	consumer, err := sarama.NewConsumer(k.Brokers, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "watershed tail: %v\n", err)
		return 1
	}
	defer consumer.Close()
	parts, err := consumer.Partitions(topic.Name)
	if err != nil {
		fmt.Fprintf(stderr, "watershed tail: topic %s: %v\n", topic.Name, err)
		return 1
	}
	start := sarama.OffsetNewest
	if *fromBeginning {
		start = sarama.OffsetOldest
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs := make(chan *sarama.ConsumerMessage)
	errs := make(chan error)
	for _, p := range parts {
		pc, err := consumer.ConsumePartition(topic.Name, p, start)
		if err != nil {
			fmt.Fprintf(stderr, "watershed tail: %s/%d: %v\n", topic.Name, p, err)
			return 1
		}
		defer pc.AsyncClose()
		go forward(ctx, pc, msgs, errs)
	}
	var idle <-chan time.Time
	var timer *time.Timer
	if *timeout > 0 {
		timer = time.NewTimer(*timeout)
		defer timer.Stop()
		idle = timer.C
	}
	enc := json.NewEncoder(stdout)
	seen := 0
	for {
		select {
		case <-ctx.Done():
			return 0
		case err := <-errs:
			fmt.Fprintf(stderr, "watershed tail: %s: %v\n", topic.Name, err)
		case <-idle:
			if *maxRecords > 0 {
				fmt.Fprintf(stderr, "watershed tail: %d of %d records of %s before %s without one\n", seen, *maxRecords, topic.Name, *timeout)
				return 1
			}
			return 0
		case m := <-msgs:
			seen++
			if err := printRecord(enc, topic, m); err != nil {
				fmt.Fprintf(stderr, "watershed tail: %v\n", err)
			}
			if *maxRecords > 0 && seen >= *maxRecords {
				return 0
			}
			if timer != nil {
				timer.Reset(*timeout)
			}
		}
	}
}

// forward hands a partition's records and errors to the printing loop.
func forward(ctx context.Context, pc sarama.PartitionConsumer, msgs chan<- *sarama.ConsumerMessage, errs chan<- error) {
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-pc.Messages():
			if !ok || !send(ctx, msgs, m) {
				return
			}
		case err, ok := <-pc.Errors():
			if !ok || !send(ctx, errs, error(err)) {
				return
			}
		}
	}
}

// send sends v on ch unless ctx ends first, and says whether it did.
func send[T any](ctx context.Context, ch chan<- T, v T) bool {
	select {
	case ch <- v:
		return true
	case <-ctx.Done():
		return false
	}
}

// printRecord writes m as a JSON line, or returns the error that says why
// it cannot: a value its codec refuses, or one that has no JSON form.
func printRecord(enc *json.Encoder, t assembly.Topic, m *sarama.ConsumerMessage) error {
	line := tailLine{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Timestamp: m.Timestamp, Key: string(m.Key)}
	switch {
	case t.Decode == nil:
		line.ValueHex = hex.EncodeToString(m.Value)
	case m.Value == nil && t.Table:
		// A deletion: the table's tombstone.
	default:
		v, err := t.Decode(m.Value)
		if err != nil {
			return fmt.Errorf("%s/%d/%d (key %q): not a %s: %w", m.Topic, m.Partition, m.Offset, m.Key, t.Type, err)
		}
		line.Value = v
	}
	if err := enc.Encode(line); err != nil {
		return fmt.Errorf("%s/%d/%d: %w", m.Topic, m.Partition, m.Offset, err)
	}
	return nil
}
