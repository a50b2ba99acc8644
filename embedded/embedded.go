// Package embedded runs an in-process broker that speaks the Kafka protocol
// on loopback, so that the demo and the tests use the real goka and sarama
// client stack without an external Kafka.
//
// It wraps github.com/twmb/franz-go/pkg/kfake. The broker is a test and demo
// device, not a production store: it has one replica of every partition and
// keeps data in memory unless a data folder is given. It keeps every record
// until a topic's own retention removes it, unless Options.Retention turns
// on consumed retention (see Retention), which the demo and the benchmark do
// so that their memory stays flat.
package embedded

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Options configure an embedded broker. The zero value is a single broker on
// a free loopback port, keeping data in memory.
type Options struct {
	// Addr is the host:port to listen on; empty picks a free loopback port.
	Addr string
	// DataDir, when set, persists the log there so that a restarted broker
	// keeps its topics and committed offsets.
	DataDir string
	// Retention, when set, runs consumed retention in the background
	// until Close; nil keeps every record.
	Retention *Retention
	// Logger receives the broker's own log lines at debug level; nil
	// discards them.
	Logger *slog.Logger
}

// Broker is a running embedded broker.
type Broker struct {
	cluster   *kfake.Cluster
	addrs     []string
	log       *slog.Logger
	retention *Retention
	// stop ends the retention loop, which closes retentionDone.
	stop          context.CancelFunc
	retentionDone chan struct{}
}

// Start starts a broker. Call Close to stop it.
func Start(opts Options) (*Broker, error) {
	kopts := []kfake.Opt{
		kfake.NumBrokers(1),
		// Topics are created explicitly by the topology's topic plan; a
		// typo in a topic name must fail rather than create a new topic.
		kfake.DefaultNumPartitions(1),
	}
	if opts.Addr != "" {
		host, portText, err := net.SplitHostPort(opts.Addr)
		if err != nil {
			return nil, fmt.Errorf("embedded: address %q: %w", opts.Addr, err)
		}
		port, err := strconv.Atoi(portText)
		if err != nil {
			return nil, fmt.Errorf("embedded: port of %q: %w", opts.Addr, err)
		}
		kopts = append(kopts, kfake.Ports(port), kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
		}))
	} else {
		kopts = append(kopts, kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, "127.0.0.1:0")
		}))
	}
	if opts.DataDir != "" {
		kopts = append(kopts, kfake.DataDir(opts.DataDir))
	}
	log := opts.Logger
	if log != nil {
		kopts = append(kopts, kfake.WithLogger(slogAdapter{log}))
	} else {
		log = slog.New(slog.DiscardHandler)
	}
	var rt Retention
	if opts.Retention != nil {
		rt = opts.Retention.withDefaults()
		kopts = append(kopts, kfake.BrokerConfigs(segmentConfig(rt)))
	}
	c, err := kfake.NewCluster(kopts...)
	if err != nil {
		return nil, fmt.Errorf("embedded: start broker: %w", err)
	}
	b := &Broker{cluster: c, addrs: c.ListenAddrs(), log: log, retention: opts.Retention}
	if opts.Retention != nil {
		ctx, cancel := context.WithCancel(context.Background())
		b.stop, b.retentionDone = cancel, make(chan struct{})
		go b.runRetention(ctx, rt)
	}
	return b, nil
}

// Addrs returns the bootstrap addresses of the broker.
func (b *Broker) Addrs() []string { return append([]string(nil), b.addrs...) }

// Fault installs faults on the broker's answers (see kfake.Fault), so that
// tests can refuse chosen requests deterministically: the produce of one
// topic or partition, a number of times. Remove them with the handle.
func (b *Broker) Fault(faults ...kfake.Fault) *kfake.FaultHandle {
	return b.cluster.Fault(faults...)
}

// Close stops retention and the broker, and closes every client connection.
func (b *Broker) Close() {
	if b.stop != nil {
		b.stop()
		<-b.retentionDone
	}
	b.cluster.Close()
}

// slogAdapter routes kfake's log lines to slog at debug level.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Logf(level kfake.LogLevel, msg string, args ...any) {
	a.l.Debug(fmt.Sprintf(msg, args...), "component", "embedded-broker", "kfake_level", level.String())
}
