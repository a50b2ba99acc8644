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

	"github.com/watershed-io/watershed/assembly"
)

// command is one subcommand of the binary. Those that declare the
// pipeline take the registry (groups.go) that every one of them declares.
type command struct {
	summary string
	run     func(ctx context.Context, reg *assembly.Registry, args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

// plainRun is a subcommand that does not declare the pipeline.
type plainRun func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int

func plain(f plainRun) func(context.Context, *assembly.Registry, []string, io.Reader, io.Writer, io.Writer) int {
	return func(ctx context.Context, _ *assembly.Registry, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
		return f(ctx, args, stdin, stdout, stderr)
	}
}

// commands lists every subcommand. Each lives in a file of its own name.
func commands() map[string]command {
	return map[string]command{
		"bench":       {"run a fixed, seeded workload through the whole pipeline and report throughput, latency, CPU and memory", runBench},
		"dlq":         {"list, show, count and replay dead letters (once, dry run by default)", runDLQ},
		"demo":        {"run the whole pipeline in one process on the embedded default, with simulated devices", runDemo},
		"decode":      {"print a device package as JSON (the test vectors' form)", plain(runDecode)},
		"simulate":    {"play a fleet of devices, with faults, against the ingest edge", plain(runSimulate)},
		"healthcheck": {"exit 0 when a URL answers 200 (for container health checks)", plain(runHealthcheck)},
		"ingest":      {"serve the ingest edge (POST /v1/packages) with /healthz, /readyz, and /metrics on --ops-addr", plain(runIngest)},
		"readings":    {"list a device's stored readings as JSON lines", plain(runReadings)},
		"run":         {"run processor groups of the pipeline against Kafka (any subset, any number of replicas)", runRun},
		"tail":        {"print a topic's records as JSON lines, decoded with the topic's declared codec", runTail},
		"view":        {"serve the view API (device state) from the device-state table", runView},
		"token":       {"print a version 2 device token (device id, expiry, key generation) for provisioning", plain(runToken)},
		"topology":    {"print the declared pipeline (text, mermaid, dot, json) or its topic plan", runTopology},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// dispatch runs the subcommand named by args[0] on the binary's registry
// and returns the exit code.
func dispatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return dispatchWith(ctx, registry(), args, stdin, stdout, stderr)
}

// dispatchWith is dispatch on the registry reg.
func dispatchWith(ctx context.Context, reg *assembly.Registry, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
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
	return c.run(ctx, reg, args[1:], stdin, stdout, stderr)
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
