package topology

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/IBM/sarama/mocks"
)

type fixedClock time.Time

func (c fixedClock) Now() time.Time { return time.Time(c) }

// A session whose tick producer cannot be made at first keeps trying: its
// wall-clock timers still get their ticks once the broker answers.
func TestTickProducerRetried(t *testing.T) {
	topo := New("ticks")
	in := NewStream(topo, "in", stringCodec{}, WithPartitions(1), External("test"))
	p := topo.Processor("g")
	Consume(p, in, func(*Context, string, string) error { return nil })
	Timer(p, "t", stringCodec{}, func(*Context, string, string) error { return nil })
	if _, err := topo.Build(); err != nil {
		t.Fatal(err)
	}
	rt := p.time.newRuntime("", &Kafka{}, fixedClock(time.UnixMilli(10_000)), slog.New(slog.DiscardHandler))
	ps, err := rt.open(0, "live", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.close()
	if _, err := ps.wall.Put(timerKey(timerWall, "t", "k"), 0, 5_000, encodeState(stateValue{end: 5_000})); err != nil {
		t.Fatal(err)
	}
	rt.parts[0], rt.owned = ps, []int32{0}
	mock := mocks.NewSyncProducer(t, nil)
	sent := make(chan struct{})
	mock.ExpectSendMessageWithCheckerFunctionAndSucceed(func([]byte) error { close(sent); return nil })
	attempts := 0
	rt.newTickProducer = func() (sarama.SyncProducer, error) {
		if attempts++; attempts == 1 {
			return nil, errors.New("broker unreachable")
		}
		return mock, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	rt.ticking.Add(1)
	go rt.tick(ctx)
	select {
	case <-sent:
	case <-time.After(30 * time.Second):
		t.Error("no tick sent after the producer failed once")
	}
	cancel()
	rt.ticking.Wait()
}
