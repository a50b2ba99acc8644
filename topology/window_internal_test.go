package topology

import (
	"testing"

	"github.com/watershed-io/watershed/topology/windowstore"
)

// An aggregate sizes a window's changelog record without building it:
// the size must be that of the value emitted, or a window at the limit
// would be refused, or a larger one written and refused by the broker.
func TestChangeValueLenIsTheEmittedSize(t *testing.T) {
	for _, v := range [][]byte{{}, []byte("x"), make([]byte, 70_000)} {
		c := windowstore.Change{Key: []byte("device"), Start: 3_600_000, End: 7_200_000, Value: v}
		if got, want := changeValueLen(c), len(windowstore.ChangeValue(c)); got != want {
			t.Errorf("value of %d bytes: changeValueLen %d, ChangeValue %d bytes", len(v), got, want)
		}
	}
}
