package gencache

import (
	"bytes"
	"fmt"
	"testing"
)

func TestCacheKeepsRecentKeysWithinItsBound(t *testing.T) {
	c := New(64 << 10)
	value := bytes.Repeat([]byte("v"), 100)
	for i := range 5000 {
		c.Put(fmt.Sprint("k", i), value)
	}
	if held := c.Held(); held > 64<<10 || held == 0 {
		t.Errorf("cache holds %d bytes of keys and values, bound 64 KiB", held)
	}
	if v, ok := c.Get("k4999"); !ok || !bytes.Equal(v, value) {
		t.Errorf("newest key: %q, %v", v, ok)
	}
	if _, ok := c.Get("k0"); ok {
		t.Error("the oldest key is still held past the bound")
	}
}

func TestCacheHitInOldGenerationSurvivesTheNextTurn(t *testing.T) {
	c := New(4 << 10) // generations of 2 KiB
	c.Put("hot", []byte("x"))
	for i := 0; c.old == nil || c.old["hot"] == nil; i++ {
		c.Put(fmt.Sprint("f", i), make([]byte, 100))
	}
	if _, ok := c.GetBytes([]byte("hot")); !ok {
		t.Fatal("hot key lost at the first turn")
	}
	// Exactly one more turn: the generation "hot" was read from is gone.
	for i := 0; c.old["g0"] == nil; i++ {
		c.Put(fmt.Sprint("g", i), make([]byte, 100))
	}
	if _, ok := c.old["f0"]; ok {
		t.Fatal("the first generation survived two turns")
	}
	if v, ok := c.Get("hot"); !ok || string(v) != "x" {
		t.Errorf("a key read in the old generation was dropped at the next turn: %q, %v", v, ok)
	}
}

// Rewriting one key does not fill the cache, and many small entries turn
// it over by their count as well as their bytes.
func TestCacheCountsWhatItHolds(t *testing.T) {
	c := New(4 << 10)
	for i := range 1000 {
		c.Put("same", []byte(fmt.Sprint(i)))
	}
	if c.old != nil {
		t.Error("rewriting one key turned the cache over")
	}
	c = New(4 << 10)
	for i := range 40 { // 40 x (key + 1 byte + entry) > 2 KiB
		c.Put(fmt.Sprint("k", i), []byte{1})
	}
	if c.old == nil {
		t.Error("40 small entries did not turn over a 2 KiB generation: the entries' own size is not counted")
	}
	big := make([]byte, 3<<10)
	c.Put("k39", big) // larger than a generation: not kept, nor the old value
	if _, ok := c.Get("k39"); ok {
		t.Error("a value larger than half the bound is held")
	}
}

func TestCacheKeepsAbsences(t *testing.T) {
	c := New(1 << 10)
	c.Put("gone", nil)
	if v, ok := c.GetBytes([]byte("gone")); !ok || v != nil {
		t.Errorf("absence read as %q, %v", v, ok)
	}
	if _, ok := c.Get("never"); ok {
		t.Error("an unknown key is held")
	}
	c.Clear()
	if _, ok := c.Get("gone"); ok || !c.Enabled() {
		t.Errorf("after Clear: held %v, enabled %v", ok, c.Enabled())
	}
}

func TestZeroCacheKeepsNothing(t *testing.T) {
	var c Cache
	c.Put("a", []byte("1"))
	if _, ok := c.Get("a"); ok || c.Enabled() || func() bool { z := New(0); return z.Enabled() }() {
		t.Error("a zero cache, or one of bound 0, keeps entries")
	}
}
