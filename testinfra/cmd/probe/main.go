// Command probe checks that a real Kafka broker or Cassandra node answers,
// retrying until a time-out. scripts/infra/infra.sh uses it as the readiness
// check after starting each service, so no other client is needed.
//
// Usage:
//
//	probe [-timeout 60s] kafka 127.0.0.1:9092[,host:port...]
//	probe [-timeout 60s] cassandra 127.0.0.1:9042[,host:port...]
//	probe [-timeout 60s] kafka-controller 127.0.0.1:19091[,host:port...]
//
// kafka-controller prints the node id of a KRaft cluster's active
// controller (the metadata quorum's leader) alone on its line.
//
// It prints one line describing the service on success and exits 0; on
// failure it prints why to standard error and exits 1 (2 for bad usage).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/watershed-io/watershed/testinfra/probe"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole command, apart from the process exit, so tests can call it.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: probe [-timeout 60s] kafka|cassandra|kafka-controller host:port[,host:port...]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return 2
	}
	service, addrs := fs.Arg(0), splitAddrs(fs.Arg(1))
	if len(addrs) == 0 {
		fmt.Fprintln(stderr, "probe: no address given")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	start := time.Now()
	switch service {
	case "kafka":
		info, err := probe.Kafka(ctx, addrs)
		if err != nil {
			fmt.Fprintf(stderr, "probe: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "kafka ready in %s: brokers %s, controller %d, %d topics\n",
			time.Since(start).Round(time.Millisecond), strings.Join(info.Brokers, ","), info.ControllerID, info.Topics)
	case "cassandra":
		version, err := probe.Cassandra(ctx, addrs)
		if err != nil {
			fmt.Fprintf(stderr, "probe: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "cassandra ready in %s: release_version %s\n",
			time.Since(start).Round(time.Millisecond), version)
	case "kafka-controller":
		id, err := probe.KafkaController(ctx, addrs)
		if err != nil {
			fmt.Fprintf(stderr, "probe: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, id)
	default:
		fmt.Fprintf(stderr, "probe: unknown service %q (want kafka, cassandra or kafka-controller)\n", service)
		return 2
	}
	return 0
}

// splitAddrs splits a comma-separated address list, dropping empty items.
func splitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}
