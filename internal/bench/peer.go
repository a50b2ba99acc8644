package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/lovoo/goka/storage"
	"golang.org/x/sync/errgroup"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/edge"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// The peer is the same work done the way goka's examples do it: a plain
// goka pipeline with goka's default configuration, JSON values and one
// record per message. A processor decodes each raw package and emits each
// message as its own record; a second one keeps each device's state in a
// group table (count and newest message), a table read and write per
// message. It has no dedupe, validation, alerts or store, so it does less
// than the pipeline; what it shows is the price of one record per message.

// peerMessage is one message as the peer's records carry it.
type peerMessage struct {
	Device   uint64  `json:"device"`
	TimeMs   uint64  `json:"time_ms"`
	Type     uint8   `json:"type"`
	CRC      uint32  `json:"crc"`
	Received int64   `json:"received_ms"`
	Value    float64 `json:"value"`
}

// peerState is a device's state in the peer's table.
type peerState struct {
	Messages   uint64 `json:"messages"`
	LastTimeMs uint64 `json:"last_time_ms"`
}

// quietGoka discards goka's logs (the runner's are discarded too).
type quietGoka struct{}

func (quietGoka) Print(...any)          {}
func (quietGoka) Println(...any)        {}
func (quietGoka) Printf(string, ...any) {}

// peerDecoder is a warm decoder with its package.
type peerDecoder struct {
	dec protocol.Decoder
	pkg protocol.Package
}

// peerJSON is a JSON codec of T, as goka's examples write theirs.
type peerJSON[T any] struct{}

func (peerJSON[T]) Encode(v any) ([]byte, error) { return json.Marshal(v) }
func (peerJSON[T]) Decode(b []byte) (any, error) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// gokaPeer drains the raw topic with the peer and returns its figures:
// records are the raw packages, as in the other baselines.
func gokaPeer(ctx context.Context, k topology.Kafka, raw, prefix string, parts int32, dataDir string, packages uint64, perRecord float64, out *Baseline) error {
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	decodeGroup, stateGroup := goka.Group(prefix+"bench-peer-decode-"+id), goka.Group(prefix+"bench-peer-state-"+id)
	messages := goka.Stream(prefix + "bench-peer-messages-" + id)
	if err := createPeerTopics(k, parts, string(messages), string(goka.GroupTable(stateGroup))); err != nil {
		return err
	}
	tmc := goka.NewTopicManagerConfig()
	tmc.Table.Replication, tmc.Stream.Replication = 1, 1
	// goka's builders write the client id into the configuration they are
	// given, while clients built from it earlier read it: each builder
	// gets a configuration of its own.
	cfg := func() *sarama.Config {
		c := goka.DefaultConfig()
		c.Version = kafkaclient.Config(k).Version
		c.Consumer.Offsets.Initial = sarama.OffsetOldest // the raw topic is already full
		return c
	}
	opts := func(dir string) []goka.ProcessorOption {
		return []goka.ProcessorOption{
			goka.WithProducerBuilder(func(b []string, id string, h func() hash.Hash32) (goka.Producer, error) {
				return goka.ProducerBuilderWithConfig(cfg())(b, id, h)
			}),
			goka.WithConsumerGroupBuilder(func(b []string, group, id string) (sarama.ConsumerGroup, error) {
				return goka.ConsumerGroupBuilderWithConfig(cfg())(b, group, id)
			}),
			goka.WithConsumerSaramaBuilder(func(b []string, id string) (sarama.Consumer, error) {
				return goka.SaramaConsumerBuilderWithConfig(cfg())(b, id)
			}),
			goka.WithTopicManagerBuilder(func(b []string) (goka.TopicManager, error) {
				return goka.TopicManagerBuilderWithConfig(cfg(), tmc)(b)
			}),
			goka.WithClientID("watershed-bench-peer"),
			goka.WithLogger(quietGoka{}),
			goka.WithStorageBuilder(storage.DefaultBuilder(filepath.Join(dataDir, dir))),
		}
	}

	decoders := sync.Pool{New: func() any { return new(peerDecoder) }}
	var decoded, seen atomic.Uint64
	var rawDone atomic.Uint64
	decode, err := goka.NewProcessor(k.Brokers, goka.DefineGroup(decodeGroup,
		goka.Input(goka.Stream(raw), new(codec.Bytes), func(ctx goka.Context, msg any) {
			d := decoders.Get().(*peerDecoder)
			defer decoders.Put(d)
			pkg := &d.pkg
			received, _ := strconv.ParseInt(string(ctx.Headers()[edge.HeaderReceivedMs]), 10, 64)
			if d.dec.Decode(msg.([]byte), pkg) == nil {
				for _, m := range pkg.Messages {
					ctx.Emit(messages, ctx.Key(), &peerMessage{Device: pkg.Header.DeviceID, TimeMs: m.TimeMs, Type: uint8(m.Type),
						CRC: m.ContentCRC, Received: received, Value: float64(m.SpeedDkmh) + float64(m.XMg) + float64(m.RPM)})
					decoded.Add(1)
				}
			}
			rawDone.Add(1)
		}),
		goka.Output(messages, peerJSON[peerMessage]{}),
	), opts("decode")...)
	if err != nil {
		return fmt.Errorf("bench: goka peer: %w", err)
	}
	state, err := goka.NewProcessor(k.Brokers, goka.DefineGroup(stateGroup,
		goka.Input(messages, peerJSON[peerMessage]{}, func(ctx goka.Context, msg any) {
			m := msg.(*peerMessage)
			s, _ := ctx.Value().(*peerState)
			if s == nil {
				s = &peerState{}
			}
			s.Messages++
			s.LastTimeMs = max(s.LastTimeMs, m.TimeMs)
			ctx.SetValue(s)
			seen.Add(1)
		}),
		goka.Persist(peerJSON[peerState]{}),
	), opts("state")...)
	if err != nil {
		return fmt.Errorf("bench: goka peer: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var g errgroup.Group
	cpu0, t0 := cpuTime(), time.Now()
	g.Go(func() error { return decode.Run(ctx) })
	g.Go(func() error { return state.Run(ctx) })
	werr := waitUntil(ctx, 10*time.Minute, func() error {
		if r, d, s := rawDone.Load(), decoded.Load(), seen.Load(); r < packages || s < d {
			return fmt.Errorf("goka peer: %d of %d packages decoded, %d of %d messages in the table", r, packages, s, d)
		}
		return nil
	})
	wall, cpu := time.Since(t0), cpuTime()-cpu0
	cancel()
	if err := errors.Join(werr, g.Wait()); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("bench: goka peer: %w", err)
	}
	out.set(packages, wall, cpu, perRecord)
	return nil
}

// createPeerTopics creates the peer's stream and table topics.
func createPeerTopics(k topology.Kafka, parts int32, stream, table string) error {
	admin, err := sarama.NewClusterAdmin(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		return fmt.Errorf("bench: goka peer: %w", err)
	}
	defer admin.Close()
	compact := "compact"
	for _, t := range []struct {
		name    string
		entries map[string]*string
	}{{stream, nil}, {table, map[string]*string{"cleanup.policy": &compact}}} {
		if err := admin.CreateTopic(t.name, &sarama.TopicDetail{NumPartitions: parts, ReplicationFactor: 1, ConfigEntries: t.entries}, false); err != nil {
			return fmt.Errorf("bench: goka peer: create %s: %w", t.name, err)
		}
	}
	return nil
}
