package main

import "github.com/watershed-io/watershed/assembly"

// registry is what this binary runs: the telemetry pipeline and, one line
// each, the processor groups added to it (docs/adding-a-processor.md).
// Every command that declares the pipeline declares it from here.
func registry() *assembly.Registry {
	return assembly.New(
	// speeding.Group(), // examples/speeding: the guide's group
	)
}
