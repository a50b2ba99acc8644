package edge

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultRevocationCheckInterval is how often the revocation file is
// checked for a change.
const DefaultRevocationCheckInterval = 5 * time.Second

// revokedAll is the minimum generation of a device all of whose tokens are
// refused: above every generation a token can hold.
const revokedAll = math.MaxUint32 + 1

// revocations holds the revocation file's entries: for each listed device
// the lowest key generation still accepted. It is read on every request
// without a lock and replaced whole on reload.
type revocations struct {
	path string
	m    atomic.Pointer[map[uint64]uint64]
	// mu orders reloads; stamp is the file's last loaded size and time,
	// pending a changed one seen once, loaded when it is seen again.
	mu             sync.Mutex
	stamp, pending string
}

// minGeneration returns the lowest generation of deviceID's tokens that is
// accepted: 0 when the device is not listed.
func (r *revocations) minGeneration(deviceID uint64) uint64 {
	if r == nil {
		return 0
	}
	return (*r.m.Load())[deviceID]
}

// parseRevocations parses a revocation file: one entry a line, "DEVICE_ID"
// (every token of the device is refused) or "DEVICE_ID GENERATION" (tokens
// of a lower generation, and version 1 tokens, are refused); blank lines
// and "#" comments are ignored. A device listed twice keeps its stricter
// entry.
func parseRevocations(b []byte) (map[uint64]uint64, error) {
	m := make(map[uint64]uint64)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) > 2 {
			return nil, fmt.Errorf("line %d: want DEVICE_ID [GENERATION], got %d fields", n, len(fields))
		}
		id, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil || id == 0 {
			return nil, fmt.Errorf("line %d: device id %q is not a decimal id above 0", n, fields[0])
		}
		gen := uint64(revokedAll)
		if len(fields) == 2 {
			g, err := strconv.ParseUint(fields[1], 10, 32)
			if err != nil {
				return nil, fmt.Errorf("line %d: generation %q is not a decimal uint32", n, fields[1])
			}
			gen = g
		}
		m[id] = max(m[id], gen)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return m, nil
}

// newRevocations loads path; it must exist and parse.
func newRevocations(path string) (*revocations, error) {
	r := &revocations{path: path}
	empty := map[uint64]uint64{}
	r.m.Store(&empty)
	if _, err := r.reload(true); err != nil {
		return nil, err
	}
	return r, nil
}

// reload reads the file again when force is set, or when its size and
// modification time changed and then stayed the same for one check, so
// that a file caught while being rewritten in place (truncated, say) is not
// loaded. It reports whether it loaded. On error the entries loaded before
// stay in force.
func (r *revocations) reload(force bool) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fi, err := os.Stat(r.path)
	if err != nil {
		return false, fmt.Errorf("edge: revocation file: %w", err)
	}
	stamp := fmt.Sprintf("%d/%d", fi.Size(), fi.ModTime().UnixNano())
	if !force && (stamp == r.stamp || stamp != r.pending) {
		r.pending = stamp
		return false, nil
	}
	b, err := os.ReadFile(r.path)
	if err != nil {
		return false, fmt.Errorf("edge: revocation file: %w", err)
	}
	m, err := parseRevocations(b)
	if err != nil {
		return false, fmt.Errorf("edge: revocation file %s: %w", r.path, err)
	}
	r.m.Store(&m)
	r.stamp = stamp
	return true, nil
}

// ReloadRevocations reads the revocation file again (call it on SIGHUP);
// the edge also does every Options.RevocationCheckInterval when the file
// changed. On error the entries loaded before stay in force. Without a
// revocation file it does nothing.
func (e *Edge) ReloadRevocations() error {
	return e.reloadRevocations(true)
}

func (e *Edge) reloadRevocations(force bool) error {
	if e.revocations == nil {
		return nil
	}
	loaded, err := e.revocations.reload(force)
	switch {
	case err != nil:
		e.metrics.revocationReloads.WithLabelValues("error").Inc()
		e.log.Error("revocation file not reloaded; the previous entries stay in force", "error", err)
	case loaded:
		e.metrics.revocationReloads.WithLabelValues("ok").Inc()
		e.metrics.revokedDevices.Set(float64(len(*e.revocations.m.Load())))
		e.log.Info("revocation file loaded", "devices", len(*e.revocations.m.Load()))
	}
	return err
}

// watchRevocations checks the revocation file for changes until ctx ends.
func (e *Edge) watchRevocations(ctx context.Context) {
	t := time.NewTicker(e.opts.RevocationCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = e.reloadRevocations(false)
		}
	}
}
