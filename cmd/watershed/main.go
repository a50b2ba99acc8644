// Command watershed is the one binary of the watershed telemetry pipeline:
// its subcommands run the demo, the processor groups, the ingest edge and the
// view API, and offer the tools operators and the firmware team use.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand of the binary.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

// commands lists every subcommand. Each lives in a file of its own name.
func commands() map[string]command {
	return map[string]command{
		"bench":       {"run a fixed, seeded workload through the whole pipeline and report throughput, latency, CPU and memory", runBench},
		"dlq":         {"list, show, count and replay dead letters (once, dry run by default)", runDLQ},
		"demo":        {"run the whole pipeline in one process on the embedded default, with simulated devices", runDemo},
		"decode":      {"print a device package as JSON (the test vectors' form)", runDecode},
		"simulate":    {"play a fleet of devices, with faults, against the ingest edge", runSimulate},
		"healthcheck": {"exit 0 when a URL answers 200 (for container health checks)", runHealthcheck},
		"ingest":      {"serve the ingest edge (POST /v1/packages) with /healthz, /readyz, and /metrics on --ops-addr", runIngest},
		"readings":    {"list a device's stored readings as JSON lines", runReadings},
		"run":         {"run processor groups of the pipeline against Kafka (any subset, any number of replicas)", runRun},
		"view":        {"serve the view API (device state) from the device-state table", runView},
		"token":       {"print a version 2 device token (device id, expiry, key generation) for provisioning", runToken},
		"topology":    {"print the declared pipeline (text, mermaid, dot, json) or its topic plan", runTopology},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// dispatch runs the subcommand named by args[0] and returns the exit code.
func dispatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout, cmds)
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "watershed: unknown command %q\n\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	return c.run(ctx, args[1:], stdin, stdout, stderr)
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "usage: watershed <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'watershed <command> -h' for a command's flags.")
}
