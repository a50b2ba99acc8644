package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/watershed-io/watershed/sinks/cassandra"
)

// cassandraFlags select and configure the Cassandra store; `watershed run`
// (--store cassandra) and `watershed readings` (--store cassandra) share
// them.
type cassandraFlags struct {
	hosts       string
	keyspace    string
	consistency string
	user        string
	password    *secretFlag
	tlsCA       string
}

// register adds the flags to fs, with defaults from the environment.
func (c *cassandraFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.hosts, "cassandra-hosts", envOr("WATERSHED_CASSANDRA_HOSTS", ""), "Cassandra contact points, host[:port] comma-separated, for --store cassandra (env WATERSHED_CASSANDRA_HOSTS)")
	fs.StringVar(&c.keyspace, "cassandra-keyspace", envOr("WATERSHED_CASSANDRA_KEYSPACE", cassandra.DefaultKeyspace), "Cassandra keyspace of the readings (env WATERSHED_CASSANDRA_KEYSPACE)")
	fs.StringVar(&c.consistency, "cassandra-consistency", envOr("WATERSHED_CASSANDRA_CONSISTENCY", "LOCAL_QUORUM"), "consistency of Cassandra reads and writes (env WATERSHED_CASSANDRA_CONSISTENCY)")
	fs.StringVar(&c.user, "cassandra-user", envOr("WATERSHED_CASSANDRA_USER", ""), "Cassandra user name; empty: no login (env WATERSHED_CASSANDRA_USER)")
	c.password = newSecretFlag(fs, "cassandra-password", "WATERSHED_CASSANDRA_PASSWORD", "Cassandra password", "Cassandra password", "")
	fs.StringVar(&c.tlsCA, "cassandra-tls-ca", envOr("WATERSHED_CASSANDRA_TLS_CA", ""), "PEM file of the CA that signed the Cassandra nodes' certificates; set: connect with TLS (env WATERSHED_CASSANDRA_TLS_CA)")
}

// options returns the store options the flags select. log (nil: none)
// receives the warnings: a password given as a flag value, a password sent
// without TLS.
func (c *cassandraFlags) options(log *slog.Logger) (cassandra.Options, error) {
	hosts := splitList(c.hosts)
	if len(hosts) == 0 {
		return cassandra.Options{}, errors.New("--store cassandra needs --cassandra-hosts (or WATERSHED_CASSANDRA_HOSTS)")
	}
	cons, err := cassandra.ParseConsistency(c.consistency)
	if err != nil {
		return cassandra.Options{}, fmt.Errorf("--cassandra-consistency: %w", err)
	}
	password, err := c.password.resolve(log)
	if err != nil {
		return cassandra.Options{}, err
	}
	if password != "" && c.user == "" {
		return cassandra.Options{}, errors.New("--cassandra-password without --cassandra-user")
	}
	o := cassandra.Options{Hosts: hosts, Keyspace: c.keyspace, Consistency: cons,
		Username: c.user, Password: password, Logger: log}
	if c.tlsCA != "" {
		pem, err := os.ReadFile(c.tlsCA)
		if err != nil {
			return cassandra.Options{}, fmt.Errorf("--cassandra-tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return cassandra.Options{}, fmt.Errorf("--cassandra-tls-ca %s: no PEM certificate in it", c.tlsCA)
		}
		o.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if o.TLS == nil && c.user != "" && log != nil {
		// PasswordAuthenticator takes the password as it is (SASL PLAIN).
		log.Warn("the Cassandra password is sent without TLS, readable by whoever sits between; set --cassandra-tls-ca",
			"user", c.user, "hosts", hosts)
	}
	return o, nil
}

// open opens the Cassandra store. A reader (readOnly) neither creates nor
// migrates the schema.
func (c *cassandraFlags) open(ctx context.Context, log *slog.Logger, readOnly bool) (*cassandra.Store, error) {
	o, err := c.options(log)
	if err != nil {
		return nil, err
	}
	o.SkipMigrations = readOnly
	return cassandra.Open(ctx, o)
}
