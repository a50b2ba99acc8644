package main

import (
	"context"
	"fmt"
	"io"

	"github.com/watershed-io/watershed/assembly"
	"github.com/watershed-io/watershed/topology"
)

// runTopology implements `watershed topology`: it prints the declared
// pipeline, or with --plan the topics it would create on a cluster.
func runTopology(_ context.Context, reg *assembly.Registry, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("topology", "topology [--format text|mermaid|dot|json] [--fuse decode,alerts] [--plan|--create --brokers B]", stderr)
	format := fs.String("format", "text", "output format: text, mermaid, dot or json")
	plan := fs.Bool("plan", false, "print the topic plan against --brokers (a dry run: nothing is created)")
	create := fs.Bool("create", false, "create the missing topics on --brokers and print the plan (processes also do this when they start)")
	var sf settingsFlags
	var tf topicFlags
	var kf kafkaFlags
	sf.register(fs, reg)
	tf.register(fs)
	kf.register(fs)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	v, cfg, err := sf.values()
	if err != nil {
		fmt.Fprintf(stderr, "watershed topology: %v\n", err)
		return 2
	}
	p, err := reg.Build(cfg, v) // validates
	if err != nil {
		fmt.Fprintf(stderr, "watershed topology: %v\n", err)
		return 1
	}
	if *plan || *create {
		k, err := kf.kafka(newLogger(stderr))
		if err != nil {
			fmt.Fprintf(stderr, "watershed topology: %v\n", err)
			return 2
		}
		opts := tf.options()
		opts.DryRun = !*create
		steps, err := p.Topology.EnsureTopics(k, opts)
		if werr := topology.WritePlan(stdout, steps); werr != nil && err == nil {
			err = werr
		}
		if err != nil {
			fmt.Fprintf(stderr, "watershed topology: %v\n", err)
			return 1
		}
		return 0
	}
	if err := p.Topology.Describe().Write(stdout, topology.Format(*format)); err != nil {
		fmt.Fprintf(stderr, "watershed topology: %v\n", err)
		return 2
	}
	return 0
}
