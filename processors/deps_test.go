package processors_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPipelineDoesNotImportTheEdge holds the pipeline to the contract
// package ingest: it must not depend on the edge's implementation.
func TestPipelineDoesNotImportTheEdge(t *testing.T) {
	mod, err := exec.Command("go", "list", "-m").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	list, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	edge := strings.TrimSpace(string(mod)) + "/edge"
	for _, d := range strings.Fields(string(list)) {
		if d == edge || strings.HasPrefix(d, edge+"/") {
			t.Errorf("processors depend on %s", d)
		}
	}
}
