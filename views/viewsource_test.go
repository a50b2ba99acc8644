package views

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// TestViewSourceOnEmbeddedBroker writes device states to a device-state
// table topic and reads them through a real topology.View.
func TestViewSourceOnEmbeddedBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	k := topology.Kafka{Brokers: b.Addrs()}

	top := topology.New("viewtest")
	in := topology.NewStream(top, "states", records.DeviceStateCodec{}, topology.WithPartitions(2), topology.External("test"))
	p := top.Processor("device-state")
	table := topology.Persist(p, records.DeviceStateCodec{}, topology.WithPartitions(2))
	topology.Consume(p, in, func(ctx *topology.Context, _ string, s records.DeviceState) error {
		return table.Set(ctx, s)
	})
	if _, err := top.EnsureTopics(k, topology.TopicOptions{}); err != nil {
		t.Fatal(err)
	}

	// The table topic as the device-state group writes it, plus a state
	// stored under another device's key.
	v1, v2 := stateV1(), stateV2()
	wrong := records.DeviceState{DeviceID: 7, Version: 1}
	prod, err := sarama.NewSyncProducer(k.Brokers, kafkaclient.ProducerConfig(k))
	if err != nil {
		t.Fatal(err)
	}
	for key, s := range map[string]records.DeviceState{"1001": v1, "18446744073709551615": v2, "8": wrong} {
		val, err := records.DeviceStateCodec{}.Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: table.Name(), Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(val)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := prod.Close(); err != nil {
		t.Fatal(err)
	}

	view, err := topology.NewView(table, topology.ViewOptions{Kafka: k, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	src := NewViewSource(view)
	if err := src.Ready(); !errors.Is(err, ErrNotReady) {
		t.Errorf("before Run: Ready() = %v, want ErrNotReady", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- view.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("view run: %v", err)
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for src.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("view not ready: %v", src.Ready())
		}
		time.Sleep(20 * time.Millisecond)
	}

	got, ok, err := src.Get(1<<64 - 1)
	if err != nil || !ok || got.Messages != v2.Messages || len(got.Latest) != len(v2.Latest) {
		t.Errorf("Get(max) = %+v, %v, %v", got, ok, err)
	}
	if _, ok, err := src.Get(4242); ok || err != nil {
		t.Errorf("Get(unknown) = %v, %v", ok, err)
	}
	if _, _, err := src.Get(8); err == nil {
		t.Error("state under another device's key: no error")
	}

	// The whole API over the view.
	keys, err := FullScopeKey(testKey)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Source: src, Keys: keys, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := &harness{h: srv.Handler()}
	for id, want := range map[uint64]string{1001: compact(t, wantV1), 1<<64 - 1: compact(t, wantV2)} {
		w := hs.get(t, "/v1/devices/"+strconv.FormatUint(id, 10), testKey)
		if w.Code != http.StatusOK || w.Body.String() != want {
			t.Errorf("device %d: got %d %s\nwant %s", id, w.Code, w.Body, want)
		}
	}
	if w := hs.get(t, "/v1/devices/4242", testKey); w.Code != http.StatusNotFound {
		t.Errorf("unknown: got %d", w.Code)
	}
}
