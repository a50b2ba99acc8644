// Package gokabind is the goka side of a topology processor group, for the
// framework's own test driver (topology/topologytest), which runs groups on
// goka's tester. It keeps goka's types out of topology's exported API.
package gokabind

import (
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"
)

// Binding builds the goka processor of one processor group.
type Binding interface {
	// NewProcessor builds the group's goka processor with the given goka
	// options and no hooks: the very callbacks a Runner runs.
	NewProcessor(brokers []string, opts ...goka.ProcessorOption) (*goka.Processor, error)
}

// TableStorage builds the goka storage of a group's tables in the folder
// it is given (RunnerOptions.TableStorage; package topology/tablestore
// makes them).
type TableStorage func(dir string) storage.Builder
