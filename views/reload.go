package views

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"time"
)

// DefaultReloadInterval is how often WatchKeys looks at the key files by
// default.
const DefaultReloadInterval = 2 * time.Second

// WatchOptions configure Server.WatchKeys.
type WatchOptions struct {
	// Files are the files the keys come from (the key file, the fleet
	// file); a change of any one's content reloads the keys.
	Files []string
	// Load returns the keys to serve, read from Files (and whatever else
	// the caller adds, such as a full-scope key). Required.
	Load func() (Keys, error)
	// Interval between looks at the files (DefaultReloadInterval).
	Interval time.Duration
	// Reload, when it receives, reloads at once whether or not the files
	// changed (a SIGHUP, for instance). May be nil.
	Reload <-chan os.Signal
}

// WatchKeys loads the keys, then again when the content of o.Files changes
// or o.Reload receives, until ctx ends; it returns nil then. Keys that do not
// load (a syntax error, a short key, a missing file) are logged and
// counted, and the keys loaded before are kept, with
// watershed_view_keys_stale set to 1 until a load succeeds: a key removed
// from a file that does not load is still accepted meanwhile.
func (s *Server) WatchKeys(ctx context.Context, o WatchOptions) error {
	if o.Load == nil {
		return errors.New("views: WatchKeys without Load")
	}
	if o.Interval <= 0 {
		o.Interval = DefaultReloadInterval
	}
	// Loaded once at the start, so that a change between the caller's
	// first load and this digest is not missed. A file that cannot be read
	// counts as changed when it can again.
	last := filesDigest(o.Files)
	s.reload(o.Load, false)
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		forced := false
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-o.Reload:
			forced = true
		}
		now := filesDigest(o.Files)
		if !forced && bytes.Equal(now, last) {
			continue
		}
		// The digest is taken before loading: a change while loading is
		// seen at the next look.
		last = now
		s.reload(o.Load, forced)
	}
}

// reload loads and applies the keys once.
func (s *Server) reload(load func() (Keys, error), forced bool) {
	k, err := load()
	if err == nil {
		err = s.SetKeys(k)
	}
	if err != nil {
		s.metrics.reloads.WithLabelValues("error").Inc()
		s.metrics.keysStale.Set(1)
		s.log.Error("view API keys not reloaded; the keys loaded before are still accepted", "error", err, "signal", forced)
		return
	}
	s.metrics.reloads.WithLabelValues("ok").Inc()
	s.metrics.keysStale.Set(0)
	s.log.Info("view API keys reloaded", "keys", k.Len(), "signal", forced)
}

// filesDigest returns a digest of the files' contents; a file that cannot
// be read contributes its error.
func filesDigest(files []string) []byte {
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(h, "error %s %v\n", f, err)
			continue
		}
		fmt.Fprintf(h, "file %s %d\n", f, len(b))
		h.Write(b)
	}
	return h.Sum(nil)
}
