package topology

import (
	"math/bits"
	"slices"
	"testing"
)

// A window's panes merge as a balanced tree: n single-element panes of a
// list aggregate copy O(n log n) elements in all, not the O(n²) of
// merging them one by one into the first; and the result keeps the panes'
// time order.
func TestMergeInOrderIsATree(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 64, 1000, 1024} {
		copied := 0
		merge := func(_ string, a, b []int) []int {
			copied += len(a) + len(b)
			return append(slices.Clone(a), b...)
		}
		parts := make([][]int, n)
		want := make([]int, n)
		for i := range parts {
			parts[i], want[i] = []int{i}, i
		}
		got := mergeInOrder("k", parts, merge)
		if !slices.Equal(got, want) {
			t.Fatalf("%d panes: merged %v, want them in order", n, got)
		}
		depth := bits.Len(uint(n - 1)) // ⌈log2 n⌉
		if limit := n * depth; copied > limit {
			t.Errorf("%d panes: merging copied %d elements, want at most n⌈log2 n⌉ = %d", n, copied, limit)
		}
	}
	if got := mergeInOrder("k", nil, func(_ string, a, b []int) []int { return nil }); got != nil {
		t.Errorf("no panes merged to %v, want the zero value", got)
	}
}
