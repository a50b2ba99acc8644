package embedded_test

import (
	"net"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/watershed-io/watershed/embedded"
)

// A broker on a given address, with a data folder, keeps its topics and
// records across a restart.
func TestAddrAndDataDir(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	b, err := embedded.Start(embedded.Options{Addr: addr, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Addrs(); len(got) != 1 || got[0] != addr {
		t.Fatalf("Addrs() = %v, want [%s]", got, addr)
	}
	cfg := sarama.NewConfig()
	cfg.Producer.Return.Successes = true
	admin, err := sarama.NewClusterAdmin(b.Addrs(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.CreateTopic("kept", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	p, err := sarama.NewSyncProducer(b.Addrs(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: "kept", Value: sarama.StringEncoder("v")}); err != nil {
		t.Fatal(err)
	}
	p.Close()
	b.Close()

	b, err = embedded.Start(embedded.Options{Addr: addr, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c, err := sarama.NewConsumer(b.Addrs(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition("kept", 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	select {
	case m := <-pc.Messages():
		if string(m.Value) != "v" {
			t.Fatalf("value %q", m.Value)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the record did not survive the restart")
	}
}

func TestBadAddr(t *testing.T) {
	if _, err := embedded.Start(embedded.Options{Addr: "no-port"}); err == nil {
		t.Fatal("started on an address without a port")
	}
}
