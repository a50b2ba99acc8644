package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/watershed-io/watershed/assembly"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/settings"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/tablestore"
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

// settingsFlags are the declared settings of the pipeline and of every
// group of the registry (package settings), bound to a command's flags:
// every process of an installation must agree on them.
type settingsFlags struct {
	reg     *assembly.Registry
	binding *settings.Binding
}

func (s *settingsFlags) register(fs *flag.FlagSet, reg *assembly.Registry) {
	s.reg = reg
	s.binding = settings.Bind(fs, reg.Sections(), nil)
}

// values resolves the settings and returns them with the pipeline's
// configuration they describe.
func (s *settingsFlags) values() (settings.Values, processors.Config, error) {
	v, err := s.binding.Resolve()
	if err != nil {
		return v, processors.Config{}, err
	}
	cfg := processors.ConfigFrom(v)
	if cfg.Partitions < 1 {
		return v, cfg, fmt.Errorf("--partitions %d: want 1 or more", cfg.Partitions)
	}
	return v, cfg, nil
}

// build resolves the settings and declares the assembly; with, when set,
// adds to the pipeline's configuration what the command runs it with (its
// store, its logger).
func (s *settingsFlags) build(with func(*processors.Config)) (*assembly.Assembly, error) {
	v, cfg, err := s.values()
	if err != nil {
		return nil, err
	}
	if with != nil {
		with(&cfg)
	}
	return s.reg.Build(cfg, v)
}

// topicFlags are the settings of the topics a process creates.
type topicFlags struct {
	dlqRetentionBytes int64
}

func (t *topicFlags) register(fs *flag.FlagSet) {
	fs.Int64Var(&t.dlqRetentionBytes, "dlq-retention-bytes", int64(envInt("WATERSHED_DLQ_RETENTION_BYTES", topology.DefaultDeadLetterRetentionBytes)),
		"retention.bytes of the dead-letter topic when it is created: bytes kept per partition before the oldest dead letters are deleted; -1 for no cap (env WATERSHED_DLQ_RETENTION_BYTES)")
}

func (t *topicFlags) options() topology.TopicOptions {
	return topology.TopicOptions{DeadLetterRetentionBytes: t.dlqRetentionBytes}
}

// kafkaFlags are the flags to reach an external Kafka cluster.
type kafkaFlags struct {
	brokers     string
	clientID    string
	replication int
	// TLS and SASL/SCRAM.
	tls           bool
	tlsCA         string
	saslMechanism string
	saslUser      string
	saslPassword  *secretFlag
}

func (k *kafkaFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&k.brokers, "brokers", envOr("WATERSHED_KAFKA_BROKERS", ""), "Kafka bootstrap brokers, comma-separated (env WATERSHED_KAFKA_BROKERS)")
	fs.StringVar(&k.clientID, "client-id", envOr("WATERSHED_CLIENT_ID", "watershed"), "Kafka client id (env WATERSHED_CLIENT_ID)")
	fs.IntVar(&k.replication, "replication", envInt("WATERSHED_REPLICATION", 1), "replication factor of topics this process creates (env WATERSHED_REPLICATION)")
	fs.BoolVar(&k.tls, "kafka-tls", envOr("WATERSHED_KAFKA_TLS", "") == "true", "connect to Kafka with TLS 1.2+, trusting the system's CAs (env WATERSHED_KAFKA_TLS=true)")
	fs.StringVar(&k.tlsCA, "kafka-tls-ca", envOr("WATERSHED_KAFKA_TLS_CA", ""), "PEM file of the CA that signed the brokers' certificates; set: connect with TLS 1.2+ trusting only it (env WATERSHED_KAFKA_TLS_CA)")
	fs.StringVar(&k.saslMechanism, "kafka-sasl-mechanism", envOr("WATERSHED_KAFKA_SASL_MECHANISM", topology.SCRAMSHA512), "SASL mechanism with --kafka-sasl-user: SCRAM-SHA-256 or SCRAM-SHA-512 (env WATERSHED_KAFKA_SASL_MECHANISM)")
	fs.StringVar(&k.saslUser, "kafka-sasl-user", envOr("WATERSHED_KAFKA_SASL_USER", ""), "SASL/SCRAM user name; empty: no SASL (env WATERSHED_KAFKA_SASL_USER)")
	k.saslPassword = newSecretFlag(fs, "kafka-sasl-password", "WATERSHED_KAFKA_SASL_PASSWORD", "Kafka SASL password", "SASL/SCRAM password", "")
}

// kafka returns the cluster the flags describe. log (nil: none) receives
// the warnings: a password given as a flag value, credentials without TLS.
func (k *kafkaFlags) kafka(log *slog.Logger) (topology.Kafka, error) {
	var brokers []string
	for _, b := range strings.Split(k.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	if len(brokers) == 0 {
		return topology.Kafka{}, errors.New("no Kafka brokers: set --brokers or WATERSHED_KAFKA_BROKERS")
	}
	out := topology.Kafka{Brokers: brokers, ClientID: k.clientID, Replication: int16(k.replication)}
	if k.tls || k.tlsCA != "" {
		out.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if k.tlsCA != "" {
		pem, err := os.ReadFile(k.tlsCA)
		if err != nil {
			return topology.Kafka{}, fmt.Errorf("--kafka-tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return topology.Kafka{}, fmt.Errorf("--kafka-tls-ca %s: no PEM certificate in it", k.tlsCA)
		}
		out.TLS.RootCAs = pool
	}
	password, err := k.saslPassword.resolve(log)
	if err != nil {
		return topology.Kafka{}, err
	}
	switch {
	case k.saslUser != "":
		out.SASL = topology.SASL{Mechanism: k.saslMechanism, User: k.saslUser, Password: password}
		if k.saslMechanism != topology.SCRAMSHA256 && k.saslMechanism != topology.SCRAMSHA512 {
			return topology.Kafka{}, fmt.Errorf("--kafka-sasl-mechanism %q: want %s or %s", k.saslMechanism, topology.SCRAMSHA256, topology.SCRAMSHA512)
		}
		if out.TLS == nil && log != nil {
			log.Warn("Kafka credentials are sent without TLS: the brokers are not authenticated, so whoever sits between can pose as one, and records travel in clear; set --kafka-tls or --kafka-tls-ca",
				"user", k.saslUser, "mechanism", k.saslMechanism)
		}
	case password != "":
		return topology.Kafka{}, errors.New("--kafka-sasl-password without --kafka-sasl-user")
	}
	return out, nil
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

// --tick-every's bounds: below a few milliseconds the ticks would load the
// brokers for no gain, and past an hour a quiet partition's wall-clock
// timers would be an hour late.
const (
	minTickEvery = 10 * time.Millisecond
	maxTickEvery = time.Hour
)

// registerTickEvery adds --tick-every to fs; checkTickEvery checks it.
func registerTickEvery(fs *flag.FlagSet) *time.Duration {
	return fs.Duration("tick-every", topology.DefaultTickEvery,
		fmt.Sprintf("how often the groups look for due wall-clock timers in the partitions they own and send each partition holding one a tick record that fires them: a timer fires up to this late on a partition without records (%v to %v)", minTickEvery, maxTickEvery))
}

// checkTickEvery refuses a --tick-every out of its bounds.
func checkTickEvery(d time.Duration) error {
	if d < minTickEvery || d > maxTickEvery {
		return fmt.Errorf("--tick-every %v: must be from %v to %v", d, minTickEvery, maxTickEvery)
	}
	return nil
}

// tableStorageUsage is the help of --table-storage.
const tableStorageUsage = "groups' table storage: batched (values and the table offset reach leveldb as one batch every 50 ms; a crash loses at most that, replayed from the table topic) or leveldb (goka's: a journal write per value and per offset)"

// tableStorage returns the topology.RunnerOptions.TableStorage of a
// --table-storage value.
func tableStorage(kind string, log *slog.Logger) (tablestore.Factory, error) {
	ts, err := tablestore.ForKind(kind, tablestore.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("--table-storage: %w", err)
	}
	return ts, nil
}
