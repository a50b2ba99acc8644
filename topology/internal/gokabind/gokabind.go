// Package gokabind is the goka side of a topology, for the framework's own
// test driver (topology/topologytest), which runs processor groups on
// goka's tester. Its types are internal to the framework so that goka's
// stay out of topology's exported API: the driver asks a built plan for a
// group's binding with a Request (topology.Plan.Bind), which no code
// outside the framework can make.
package gokabind

import "github.com/lovoo/goka"

// Binding builds the goka processor of one processor group.
type Binding interface {
	// NewProcessor builds the group's goka processor with the given goka
	// options and no hooks: the very callbacks a Runner runs.
	NewProcessor(brokers []string, opts ...goka.ProcessorOption) (*goka.Processor, error)
}

// Request asks a plan for the goka binding of one of its groups.
type Request struct {
	// Group names the group (with or without the topology's prefix).
	Group string
	// Binding is what the plan answers.
	Binding Binding
}
