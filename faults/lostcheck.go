package faults

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/watershed-io/watershed/simulator"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/sinks/cassandra"
)

// LostDiagnosis says where messages are that the store's read path
// (sinks.Store.Readings) did not return although the truth has them, so
// that a failed fault run names the cause: lost by Cassandra, missed by the
// read path, or never acknowledged.
type LostDiagnosis struct {
	// Lost is how many messages were missing; InAckedWrite how many of
	// them the sink's audit shows in a write the store acknowledged.
	Lost         int `json:"lost"`
	InAckedWrite int `json:"in_acknowledged_write"`
	// ByDevice counts the missing messages per device.
	ByDevice map[uint64]int `json:"by_device"`
	// Looked is how many of them were looked up by primary key; FoundByKey
	// how many of those Cassandra returned then (at the store's
	// consistency, bypassing devices_days and paging): found means the
	// read path missed rows the store holds, not found that Cassandra does
	// not hold them.
	Looked     int `json:"looked_up"`
	FoundByKey int `json:"found_by_key"`
	// FoundAtAll is how many lookups at consistency ALL (every replica)
	// returned the row: above FoundByKey, the consistency missed a replica.
	FoundAtAll int `json:"found_at_all"`
	// DaysMissing counts missing messages whose (device, UTC day) is not
	// in devices_days: a read path that skips the whole day.
	DaysMissing int `json:"days_missing"`
	// Runs are the missing messages grouped per device into runs that no
	// returned row interrupts (time order), largest first, at most 20: a
	// whole device or day gone shows as one run, a lost commit-log window
	// as runs across devices at the same times, scattered rows as many
	// runs of one.
	Runs []LostRun `json:"runs"`
	// RunCount is the number of runs in all.
	RunCount int `json:"run_count"`
}

// LostRun is a run of missing messages of one device with no returned
// row between them.
type LostRun struct {
	DeviceID uint64 `json:"device_id"`
	// Count is the missing messages in the run; FromMs and ToMs the
	// message times of its first and last.
	Count  int    `json:"count"`
	FromMs uint64 `json:"from_ms"`
	ToMs   uint64 `json:"to_ms"`
	// BeforeMs and AfterMs are the message times of the returned rows
	// right before and after the run (0: none).
	BeforeMs uint64 `json:"before_ms"`
	AfterMs  uint64 `json:"after_ms"`
}

// String is one line for a test's failure message.
func (d LostDiagnosis) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d missing (%d in acknowledged writes) on %d devices; by primary key %d of %d looked up found at the store's consistency, %d at ALL; %d on days devices_days lacks; %d runs",
		d.Lost, d.InAckedWrite, len(d.ByDevice), d.FoundByKey, d.Looked, d.FoundAtAll, d.DaysMissing, d.RunCount)
	for i, r := range d.Runs {
		if i == 5 {
			break
		}
		fmt.Fprintf(&b, "; device %d: %d from %d to %d ms (returned rows around: %d, %d)", r.DeviceID, r.Count, r.FromMs, r.ToMs, r.BeforeMs, r.AfterMs)
	}
	return b.String()
}

// AnalyzeLost groups the missing messages (lost) among the rows the read
// path returned per device and fills every figure but the lookups.
func AnalyzeLost(lost []simulator.Identity, returned map[uint64][]simulator.Identity, audit SinkAudit) LostDiagnosis {
	d := LostDiagnosis{Lost: len(lost), ByDevice: map[uint64]int{}}
	byDev := map[uint64][]simulator.Identity{}
	for _, id := range lost {
		d.ByDevice[id.DeviceID]++
		if audit.Written[id] > 0 {
			d.InAckedWrite++
		}
		byDev[id.DeviceID] = append(byDev[id.DeviceID], id)
	}
	order := func(a, b simulator.Identity) int {
		return cmp.Or(cmp.Compare(a.TimeMs, b.TimeMs), cmp.Compare(a.ContentCRC, b.ContentCRC))
	}
	for dev, ids := range byDev {
		slices.SortFunc(ids, order)
		rows := slices.SortedFunc(slices.Values(returned[dev]), order)
		var run *LostRun
		prev := -1
		for _, id := range ids {
			// Where id falls among the returned rows: a run goes on while
			// no returned row lies between its messages.
			at, _ := slices.BinarySearchFunc(rows, id, order)
			if run == nil || at != prev {
				d.Runs = append(d.Runs, LostRun{DeviceID: dev, FromMs: id.TimeMs})
				run = &d.Runs[len(d.Runs)-1]
				if at > 0 {
					run.BeforeMs = rows[at-1].TimeMs
				}
				if at < len(rows) {
					run.AfterMs = rows[at].TimeMs
				}
			}
			prev = at
			run.Count++
			run.ToMs = id.TimeMs
		}
	}
	d.RunCount = len(d.Runs)
	slices.SortFunc(d.Runs, func(a, b LostRun) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.DeviceID, b.DeviceID), cmp.Compare(a.FromMs, b.FromMs))
	})
	d.Runs = d.Runs[:min(len(d.Runs), 20)]
	return d
}

// maxLookups bounds the primary-key lookups of DiagnoseLost.
const maxLookups = 2000

// DiagnoseLost analyses the missing messages (AnalyzeLost), then asks
// Cassandra through session for them: devices_days for their days, and
// each of up to 2,000 of them (spread over the list) by primary key in
// keyspace, at consistency cons (the store's) and at ALL.
func DiagnoseLost(ctx context.Context, session *gocql.Session, keyspace string, cons gocql.Consistency, lost []simulator.Identity,
	returned map[uint64][]simulator.Identity, audit SinkAudit) (LostDiagnosis, error) {
	d := AnalyzeLost(lost, returned, audit)
	if len(lost) == 0 {
		return d, nil
	}
	days := map[[2]int64]bool{}
	for dev := range d.ByDevice {
		iter := session.Query(fmt.Sprintf("SELECT day FROM %s.devices_days WHERE device_id = ?", keyspace), cassandra.DeviceKey(dev)).IterContext(ctx)
		var day int64
		for iter.Scan(&day) {
			days[[2]int64{cassandra.DeviceKey(dev), day}] = true
		}
		if err := iter.Close(); err != nil {
			return d, fmt.Errorf("faults: days of device %d: %w", dev, err)
		}
	}
	for _, id := range lost {
		if !days[[2]int64{cassandra.DeviceKey(id.DeviceID), cassandra.Day(id.TimeMs)}] {
			d.DaysMissing++
		}
	}
	step := max(1, len(lost)/maxLookups)
	stmt := fmt.Sprintf("SELECT time_ms FROM %s.readings WHERE device_id = ? AND day = ? AND time_ms = ? AND content_crc = ?", keyspace)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		sem      = make(chan struct{}, 16)
	)
	for i := 0; i < len(lost); i += step {
		id := lost[i]
		d.Looked++
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			found := func(c gocql.Consistency) (bool, error) {
				var ms int64
				err := session.Query(stmt, cassandra.DeviceKey(id.DeviceID), cassandra.Day(id.TimeMs), int64(id.TimeMs), int64(id.ContentCRC)).
					Consistency(c).ScanContext(ctx, &ms)
				if errors.Is(err, gocql.ErrNotFound) {
					return false, nil
				}
				return err == nil, err
			}
			byKey, err1 := found(cons)
			atAll, err2 := found(gocql.All)
			mu.Lock()
			defer mu.Unlock()
			if byKey {
				d.FoundByKey++
			}
			if atAll {
				d.FoundAtAll++
			}
			if err := cmp.Or(err1, err2); err != nil && firstErr == nil {
				firstErr = fmt.Errorf("faults: look up %v: %w", id, err)
			}
		})
	}
	wg.Wait()
	return d, firstErr
}

// StoreCheck is what CheckStore found in the store.
type StoreCheck struct {
	// Rows counts the rows read; Extra those the truth does not have, on
	// ExtraDevices.
	Rows, Extra  int
	ExtraDevices []uint64
	// Lost are the messages of the truth the store did not return.
	Lost []simulator.Identity
	// AckedLost are those of Lost that the sink's audit showed in an
	// acknowledged write before the store was read: lost by the store or
	// by its read path.
	AckedLost []simulator.Identity
	// WrittenDuringRead counts those of Lost whose acknowledged write the
	// audit shows only after the read began: the sink was still writing
	// (the pipeline had not drained), the store did not lose them.
	WrittenDuringRead int
	// Unwritten counts the truth's messages in no acknowledged write at
	// the end.
	Unwritten int
	// Audit is the sink's audit as read at the end.
	Audit SinkAudit
	// Returned holds the identities the store returned for each device
	// that has lost messages (for DiagnoseLost).
	Returned map[uint64][]simulator.Identity
}

// CheckStore reads every device of the truth from st and the sink's audit
// logs at auditPaths, and sorts what is missing: acknowledged before the
// read (lost), acknowledged while it ran (written late), or never. The
// audit is read after the store, and split at the sizes its files had
// before it: a sink that has not drained goes on writing while the store
// is read, and the rows it writes then are missing from the read although
// nothing lost them. (The files only grow: the sink appends.) (A row stored
// twice cannot be seen here: the store's primary key is the message
// identity; duplicates are looked for at the normalized topic and the
// sink's write calls instead.)
func CheckStore(ctx context.Context, st sinks.Store, truth simulator.Truth, auditPaths ...string) (StoreCheck, error) {
	c := StoreCheck{Returned: map[uint64][]simulator.Identity{}}
	sizes := make([]int64, len(auditPaths))
	for i, p := range auditPaths {
		fi, err := os.Stat(p)
		if err != nil {
			return c, fmt.Errorf("faults: sink audit: %w", err)
		}
		sizes[i] = fi.Size()
	}
	for id, d := range truth.Devices {
		got, err := st.Readings(ctx, sinks.Query{DeviceID: id})
		if err != nil {
			return c, fmt.Errorf("faults: rows of device %d: %w", id, err)
		}
		c.Rows += len(got)
		seen := make(map[simulator.Identity]bool, len(got))
		n := 0
		for _, r := range got {
			k := simulator.Identity{DeviceID: r.DeviceID, TimeMs: r.TimeMs, ContentCRC: r.ContentCRC}
			seen[k] = true
			_, stored := d.Stored[k]
			_, possible := d.Possible[k]
			if !stored && !possible {
				n++
			}
		}
		if n > 0 {
			c.Extra += n
			c.ExtraDevices = append(c.ExtraDevices, id)
		}
		lostBefore := len(c.Lost)
		for k := range d.Stored {
			if !seen[k] {
				c.Lost = append(c.Lost, k)
			}
		}
		if len(c.Lost) > lostBefore {
			for k := range seen {
				c.Returned[id] = append(c.Returned[id], k)
			}
		}
	}
	slices.Sort(c.ExtraDevices)
	audit, err := ReadSinkAudit(auditPaths...)
	if err != nil {
		return c, err
	}
	c.Audit = audit
	lost := make(map[simulator.Identity]bool, len(c.Lost))
	for _, id := range c.Lost {
		lost[id] = true
	}
	before, err := writtenWithin(auditPaths, sizes, lost)
	if err != nil {
		return c, err
	}
	for _, id := range c.Lost {
		switch {
		case before[id]:
			c.AckedLost = append(c.AckedLost, id)
		case audit.Written[id] > 0:
			c.WrittenDuringRead++
		}
	}
	for _, d := range truth.Devices {
		for id := range d.Stored {
			if audit.Written[id] == 0 {
				c.Unwritten++
			}
		}
	}
	return c, nil
}

// writtenWithin returns those of ids that an acknowledged write ("w"
// line) holds within the first sizes[i] bytes of the audit file paths[i].
// A line cut at that size counts as later.
func writtenWithin(paths []string, sizes []int64, ids map[simulator.Identity]bool) (map[simulator.Identity]bool, error) {
	out := map[simulator.Identity]bool{}
	for i, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("faults: sink audit: %w", err)
		}
		br := bufio.NewReaderSize(io.LimitReader(f, sizes[i]), 1<<20)
		for {
			line, err := br.ReadString('\n')
			if errors.Is(err, io.EOF) { // the size reached; a cut line left out
				break
			}
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("faults: sink audit %s: %w", p, err)
			}
			if !strings.HasPrefix(line, "w ") {
				continue
			}
			for _, f := range strings.Fields(line)[1:] {
				id, err := parseIdentity(f)
				if err != nil {
					return nil, fmt.Errorf("faults: sink audit %s: %w", p, err)
				}
				if ids[id] {
					out[id] = true
				}
			}
		}
		f.Close()
	}
	return out, nil
}
