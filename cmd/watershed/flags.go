package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/topology"
)

// envOr returns the environment variable name, or def when it is unset.
func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// envInt is envOr for integers; a malformed value is reported by the flag
// parse that follows, since it becomes the flag's default text.
func envInt(name string, def int) int {
	if v, ok := os.LookupEnv(name); ok {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

// newFlagSet returns a flag set that reports to stderr with a usage line.
func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: watershed %s\n\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and returns the exit code to stop with, or -1 to
// go on.
func parseFlags(fs *flag.FlagSet, args []string) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "watershed %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2
	}
	return -1
}

// pipelineFlags are the flags that shape the declared pipeline; every
// process of an installation must agree on them.
type pipelineFlags struct {
	prefix       string
	partitions   int
	dedupeWindow time.Duration
}

func (p *pipelineFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&p.prefix, "prefix", envOr("WATERSHED_PREFIX", ""), "prefix of every topic and group name (env WATERSHED_PREFIX)")
	fs.IntVar(&p.partitions, "partitions", envInt("WATERSHED_PARTITIONS", 8), "partitions of every pipeline topic (env WATERSHED_PARTITIONS)")
	fs.DurationVar(&p.dedupeWindow, "dedupe-window", 24*time.Hour, "how long message identities are remembered for cross-package dedupe")
}

func (p *pipelineFlags) config() processors.Config {
	return processors.Config{Prefix: p.prefix, Partitions: int32(p.partitions), DedupeWindow: p.dedupeWindow}
}

// kafkaFlags are the flags to reach an external Kafka cluster.
type kafkaFlags struct {
	brokers     string
	clientID    string
	replication int
}

func (k *kafkaFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&k.brokers, "brokers", envOr("WATERSHED_KAFKA_BROKERS", ""), "Kafka bootstrap brokers, comma-separated (env WATERSHED_KAFKA_BROKERS)")
	fs.StringVar(&k.clientID, "client-id", envOr("WATERSHED_CLIENT_ID", "watershed"), "Kafka client id (env WATERSHED_CLIENT_ID)")
	fs.IntVar(&k.replication, "replication", envInt("WATERSHED_REPLICATION", 1), "replication factor of topics this process creates (env WATERSHED_REPLICATION)")
}

func (k *kafkaFlags) kafka() (topology.Kafka, error) {
	var brokers []string
	for _, b := range strings.Split(k.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	if len(brokers) == 0 {
		return topology.Kafka{}, errors.New("no Kafka brokers: set --brokers or WATERSHED_KAFKA_BROKERS")
	}
	return topology.Kafka{Brokers: brokers, ClientID: k.clientID, Replication: int16(k.replication)}, nil
}

// newLogger returns the process logger: JSON lines on stderr, at the level
// of WATERSHED_LOG_LEVEL (debug, info, warn, error; default info).
func newLogger(stderr io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(envOr("WATERSHED_LOG_LEVEL", "info"))); err != nil {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
}
