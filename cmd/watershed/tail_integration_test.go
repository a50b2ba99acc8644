//go:build integration

package main

import (
	"testing"

	"github.com/watershed-io/watershed/testinfra"
)

// TestIntegrationAddedGroupRunsAndTailShowsIt is
// TestAddedGroupRunsAndTailShowsIt on real Kafka: `watershed run --groups
// speeding` runs the added group, and `watershed tail` prints its output
// and a refused record's error line.
func TestIntegrationAddedGroupRunsAndTailShowsIt(t *testing.T) {
	runAndTail(t, testinfra.Kafka(t), testinfra.UniqueName(t, "tail", 40)+".")
}
