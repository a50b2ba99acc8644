// Package gencache is the read cache of the framework's stores (table
// storage and window stores): a bounded map of keys to byte values in two
// generations. New entries go to the current generation; when it holds half
// the bound it becomes the old one and the previous old one is dropped; a
// hit in the old generation moves the entry back. So the keys read or
// written within the last half of the bound stay, at the cost of a map,
// not a list per entry.
//
// A Cache is not safe for concurrent use: its store guards it.
package gencache

// entryOverhead approximates a map entry's own bytes beyond key and value.
const entryOverhead = 64

// Cache is a bounded two-generation map. The zero value caches nothing.
type Cache struct {
	cur, old map[string][]byte
	curBytes int
	half     int
}

// New returns a cache holding about limit bytes of keys and values (between
// half of it and all of it once full); limit <= 0 caches nothing.
func New(limit int) Cache {
	if limit <= 0 {
		return Cache{}
	}
	return Cache{cur: map[string][]byte{}, half: limit / 2}
}

// Enabled reports whether the cache keeps anything.
func (c *Cache) Enabled() bool { return c.cur != nil }

// Get returns key's value (nil is a value: the store knows key has none)
// and whether the cache holds key. The value is the cache's own: callers
// copy it before handing it on.
func (c *Cache) Get(key string) ([]byte, bool) {
	if v, ok := c.cur[key]; ok {
		return v, true
	}
	v, ok := c.old[key]
	if ok {
		delete(c.old, key)
		c.Put(key, v)
	}
	return v, ok
}

// GetBytes is Get of a key held as bytes (a hit costs no conversion).
func (c *Cache) GetBytes(key []byte) ([]byte, bool) {
	if v, ok := c.cur[string(key)]; ok {
		return v, true
	}
	if _, ok := c.old[string(key)]; !ok {
		return nil, false
	}
	return c.Get(string(key))
}

// Put keeps v, owned by the cache from now on, as key's value. A value
// larger than half the bound is not kept (it would turn the generations
// over alone); an older value of key is dropped all the same.
func (c *Cache) Put(key string, v []byte) {
	if c.cur == nil {
		return
	}
	if len(key)+len(v)+entryOverhead > c.half {
		c.delete(key)
		return
	}
	if old, ok := c.cur[key]; ok {
		c.curBytes -= len(old)
	} else {
		c.curBytes += len(key) + entryOverhead
	}
	c.cur[key] = v
	c.curBytes += len(v)
	if c.curBytes >= c.half {
		c.old, c.cur, c.curBytes = c.cur, make(map[string][]byte, len(c.cur)), 0
	}
}

// delete drops key from both generations.
func (c *Cache) delete(key string) {
	if old, ok := c.cur[key]; ok {
		c.curBytes -= len(key) + len(old) + entryOverhead
		delete(c.cur, key)
	}
	delete(c.old, key)
}

// Clear drops every entry; the cache keeps its bound.
func (c *Cache) Clear() {
	if c.cur == nil {
		return
	}
	clear(c.cur)
	c.old, c.curBytes = nil, 0
}

// Held returns the bytes of keys and values the cache holds (a key in
// both generations counts once: Get reads the current one).
func (c *Cache) Held() int {
	n := 0
	for k, v := range c.cur {
		n += len(k) + len(v)
	}
	for k, v := range c.old {
		if _, ok := c.cur[k]; !ok {
			n += len(k) + len(v)
		}
	}
	return n
}
