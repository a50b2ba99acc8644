package edge

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/ingest"
	"github.com/watershed-io/watershed/topology"
)

func TestAcceptedRecordsAreUnchangedWithHeadersOnTheGoodPartition(t *testing.T) {
	f := newFixture(t, nil, nil)
	sent := map[string][]byte{}
	for i := uint64(1); i <= 12; i++ {
		id := i * 1_000_003
		if i == 12 {
			id = ^uint64(0) // the largest id, 20 decimal digits
		}
		pkg := testPackage(t, id, i%2 == 0)
		if r := f.post(t, pkg, bearerFor(testSecret, id)); r.code != http.StatusAccepted || r.status != "accepted" {
			t.Fatalf("device %d: %s, want 202 accepted", id, describe(r))
		}
		sent[strconv.FormatUint(id, 10)] = pkg
	}
	got := readTopic(t, f.kafka, testRaw, len(sent))
	partitions := map[int32]bool{}
	for _, m := range got {
		key := string(m.Key)
		pkg, ok := sent[key]
		if !ok {
			t.Fatalf("record with unexpected key %q", key)
		}
		if !bytes.Equal(m.Value, pkg) {
			t.Errorf("key %s: value differs from the package sent", key)
		}
		if want := topology.Partition(m.Key, testPartitions); m.Partition != want {
			t.Errorf("key %s on partition %d, topology.Partition says %d", key, m.Partition, want)
		}
		partitions[m.Partition] = true
		h := headerMap(m.Headers)
		if h[HeaderReceivedMs] != msString(testNow) || h[HeaderEdgeID] != testEdgeID || len(h) != 2 {
			t.Errorf("key %s: headers %v", key, h)
		}
		at, err := ingest.ReceivedAt(func(k string) []byte {
			for _, rh := range m.Headers {
				if string(rh.Key) == k {
					return rh.Value
				}
			}
			return nil
		})
		if err != nil || !at.Equal(testNow.Truncate(time.Millisecond)) {
			t.Errorf("key %s: ReceivedAt = %v, %v", key, at, err)
		}
		if !m.Timestamp.Equal(testNow.Truncate(time.Millisecond)) {
			t.Errorf("key %s: record timestamp %v", key, m.Timestamp)
		}
		delete(sent, key)
	}
	if len(partitions) < 2 {
		t.Errorf("all records on partitions %v: the partition check proves little", partitions)
	}
	if n := metric(t, f.reg, "watershed_edge_requests_total", "code", "202"); n != 12 {
		t.Errorf("requests_total{code=202} = %v", n)
	}
	if n := metric(t, f.reg, "watershed_edge_produce_duration_seconds", "", ""); n != 12 {
		t.Errorf("produce_duration_seconds count = %v", n)
	}
	if n := metric(t, f.reg, "watershed_edge_package_bytes", "", ""); n != 12 {
		t.Errorf("package_bytes count = %v", n)
	}
	if n := metric(t, f.reg, "watershed_edge_inflight_bytes", "", ""); n != 0 {
		t.Errorf("inflight_bytes = %v after every request was answered", n)
	}
	if err := f.edge.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
}

func TestPreviousSecretIsAccepted(t *testing.T) {
	f := newFixture(t, nil, nil)
	const id = 77
	if r := f.post(t, testPackage(t, id, true), bearerFor(testPrevSecret, id)); r.code != http.StatusAccepted {
		t.Fatalf("token under the previous secret: %s, want 202", describe(r))
	}
	m := readTopic(t, f.kafka, testRaw, 1)[0]
	if string(m.Key) != "77" {
		t.Errorf("key %q", m.Key)
	}
}

// nothingWritten checks that neither topic got a record.
func nothingWritten(t *testing.T, f *fixture) {
	t.Helper()
	for _, topic := range []string{testRaw, testDLQ} {
		if n := topicSize(t, f.kafka, topic); n != 0 {
			t.Errorf("%s holds %d records, want none", topic, n)
		}
	}
}

func TestUntrustedHeaderIs400(t *testing.T) {
	f := newFixture(t, nil, nil)
	const id = 4242
	good := testPackage(t, id, true)
	mutate := func(fn func([]byte) []byte) []byte { return fn(bytes.Clone(good)) }
	cases := []struct {
		name   string
		pkg    []byte
		reason string
	}{
		{"empty", nil, "truncated"},
		{"two bytes", good[:2], "truncated"},
		{"bad magic", mutate(func(b []byte) []byte { b[0] = 'X'; return b }), "bad_magic"},
		{"unsupported version", mutate(func(b []byte) []byte { b[2] = 3; _ = protocol.ResealHeader(b); return b }), "unsupported_version"},
		{"version 0", mutate(func(b []byte) []byte { b[2] = 0; return b }), "unsupported_version"},
		{"truncated header", good[:protocol.HeaderLenV2-1], "truncated"},
		{"header crc", mutate(func(b []byte) []byte { b[13] ^= 0x40; return b }), "header_crc"},
		{"header crc bytes", mutate(func(b []byte) []byte { b[protocol.HeaderLenV2-1] ^= 1; return b }), "header_crc"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Even with a good token: the header cannot be trusted.
			r := f.post(t, c.pkg, bearerFor(testSecret, id))
			if r.code != http.StatusBadRequest || r.errWord != c.reason {
				t.Errorf("%s, want 400 %s", describe(r), c.reason)
			}
			// And with none, a missing token is answered first.
			if r := f.post(t, c.pkg, ""); r.code != http.StatusUnauthorized {
				t.Errorf("without a token: %s, want 401", describe(r))
			}
		})
	}
	if n := metric(t, f.reg, "watershed_edge_rejected_total", "reason", "header_crc"); n != 2 {
		t.Errorf("rejected_total{reason=header_crc} = %v, want 2", n)
	}
	nothingWritten(t, f)
}

func TestBadTokensAre401(t *testing.T) {
	f := newFixture(t, nil, nil)
	const id = 99
	pkg := testPackage(t, id, false)
	good := Token(testSecret, id)
	cases := []struct{ name, auth string }{
		{"missing", ""},
		{"empty bearer", "Bearer "},
		{"other scheme", "Basic " + good},
		{"wrong", "Bearer 0123456789abcdef"},
		{"other device", bearerFor(testSecret, id+1)},
		{"unknown secret", bearerFor([]byte("not-the-secret"), id)},
		{"uppercase hex", "Bearer " + strings.ToUpper(good)},
		{"truncated", "Bearer " + good[:len(good)-1]},
		{"extended", "Bearer " + good + "0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := f.post(t, pkg, c.auth)
			if r.code != http.StatusUnauthorized || r.errWord != "unauthorized" {
				t.Errorf("%s, want 401 unauthorized", describe(r))
			}
		})
	}
	// A package that fails checks 3-4 is 401, not 422, without the right
	// token: nothing of it is kept.
	trailing := append(bytes.Clone(pkg), 0)
	if r := f.post(t, trailing, bearerFor(testSecret, id+1)); r.code != http.StatusUnauthorized {
		t.Errorf("trailing bytes, other device's token: %s, want 401", describe(r))
	}
	if r := f.post(t, pkg, "bearer "+good); r.code != http.StatusAccepted {
		t.Errorf("lowercase scheme name: %s, want 202", describe(r))
	}
	if n := metric(t, f.reg, "watershed_edge_rejected_total", "reason", "missing_token"); n != 3 {
		t.Errorf("rejected_total{reason=missing_token} = %v, want 3", n)
	}
	if n := topicSize(t, f.kafka, testRaw); n != 1 {
		t.Errorf("raw topic holds %d records, want 1", n)
	}
	if n := topicSize(t, f.kafka, testDLQ); n != 0 {
		t.Errorf("dead-letter topic holds %d records, want none", n)
	}
}

// tooLargeHeader is a version 1 header announcing a body over the limit.
func tooLargeHeader(id uint64) []byte {
	return protocol.AppendHeader(nil, protocol.Header{Version: 1, DeviceID: id, MessageCount: 1, BaseTimeMs: testBaseTime, BodyLen: protocol.MaxBodyLen + 1})
}

func TestBodyLenTooLargeIs413(t *testing.T) {
	f := newFixture(t, nil, nil)
	const id = 5
	pkg := append(tooLargeHeader(id), testRecord(t)...)
	r := f.post(t, pkg, bearerFor(testSecret, id))
	if r.code != http.StatusRequestEntityTooLarge || r.errWord != "too_large" {
		t.Errorf("%s, want 413 too_large", describe(r))
	}
	// Content-Length over the largest package: answered from the headers.
	big := make([]byte, MaxPackageBytes+1)
	copy(big, testPackage(t, id, false))
	if r := f.post(t, big, bearerFor(testSecret, id)); r.code != http.StatusRequestEntityTooLarge || r.errWord != "too_large" {
		t.Errorf("body of %d bytes: %s, want 413 too_large", len(big), describe(r))
	}
	if n := metric(t, f.reg, "watershed_edge_rejected_total", "reason", "too_large"); n != 2 {
		t.Errorf("rejected_total{reason=too_large} = %v, want 2", n)
	}
	nothingWritten(t, f)
}

// endless is a body that never ends: a valid package's start, then zeros.
// It counts what was read from it.
type endless struct {
	mu     sync.Mutex
	prefix []byte
	n      int64
}

func (e *endless) Read(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := copy(p, e.prefix)
	e.prefix = e.prefix[n:]
	clear(p[n:])
	e.n += int64(len(p))
	return len(p), nil
}

func (e *endless) count() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n
}

func TestEndlessChunkedBodyIs413(t *testing.T) {
	f := newFixture(t, nil, nil)
	const id = 6
	conn, err := net.Dial("tcp", f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: edge\r\nAuthorization: %s\r\nTransfer-Encoding: chunked\r\n\r\n", Path, bearerFor(testSecret, id))
	body := &endless{prefix: testPackage(t, id, false)}
	// Write chunks until the server closes the connection; the response
	// is read concurrently, whatever becomes of the writes.
	writeDone := make(chan error, 1)
	go func() {
		w := bufio.NewWriter(conn)
		buf := make([]byte, 16<<10)
		for {
			n, _ := body.Read(buf)
			if _, err := fmt.Fprintf(w, "%x\r\n", n); err != nil {
				writeDone <- err
				return
			}
			w.Write(buf[:n])
			w.WriteString("\r\n")
			if err := w.Flush(); err != nil {
				writeDone <- err
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := readResult(t, resp)
	if r.code != http.StatusRequestEntityTooLarge || r.errWord != "too_large" {
		t.Errorf("%s, want 413 too_large", describe(r))
	}
	if resp.Close != true {
		t.Errorf("the server keeps the connection open after a too-large body")
	}
	// The server closed the connection: the writer stops.
	conn.(*net.TCPConn).CloseRead()
	if err := <-writeDone; err == nil {
		t.Error("the writer stopped without an error")
	}
	t.Logf("the client wrote %d bytes of the endless body before the server closed", body.count())
	nothingWritten(t, f)
}

func TestOversizedBodyOfUnknownLengthIs413(t *testing.T) {
	// One byte over the limit, sent chunked through the ordinary client.
	f := newFixture(t, nil, nil)
	const id = 7
	pkg := make([]byte, MaxPackageBytes+1)
	copy(pkg, testPackage(t, id, false))
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+Path, io.MultiReader(bytes.NewReader(pkg)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", bearerFor(testSecret, id))
	if req.ContentLength != 0 {
		t.Fatalf("request has a Content-Length %d", req.ContentLength)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if r := readResult(t, resp); r.code != http.StatusRequestEntityTooLarge {
		t.Errorf("%s, want 413", describe(r))
	}
	// Exactly the limit, chunked: read whole, then judged by the checks
	// (a version 2 header with body_len 1 MiB is a legal size).
	legal := protocol.AppendHeader(nil, protocol.Header{Version: 2, DeviceID: id, MessageCount: 1, BodyLen: protocol.MaxBodyLen})
	legal = append(legal, make([]byte, protocol.MaxBodyLen)...)
	req, _ = http.NewRequest(http.MethodPost, f.srv.URL+Path, io.MultiReader(bytes.NewReader(legal)))
	req.Header.Set("Authorization", bearerFor(testSecret, id))
	resp, err = f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if r := readResult(t, resp); r.code != http.StatusAccepted {
		t.Errorf("legal package of %d bytes, chunked: %s, want 202", len(legal), describe(r))
	}
	if m := readTopic(t, f.kafka, testRaw, 1)[0]; !bytes.Equal(m.Value, legal) {
		t.Errorf("the largest package was changed on its way")
	}
}

func TestFailedChecks3To4Are422AndDeadLettered(t *testing.T) {
	f := newFixture(t, nil, nil)
	good := testPackage(t, 31337, true)
	rec := testRecord(t)
	assemble := func(h protocol.Header) []byte {
		h.Version, h.BaseTimeMs, h.PackageSeq = 2, testBaseTime, 9
		return protocol.AssemblePackage(nil, h, rec)
	}
	cases := []struct {
		name   string
		id     uint64
		pkg    []byte
		reason string
	}{
		{"bad flags", 31337, func() []byte {
			b := bytes.Clone(good)
			b[3] |= 0x80
			if err := protocol.ResealHeader(b); err != nil {
				t.Fatal(err)
			}
			return b
		}(), "bad_flags"},
		{"zero device", 0, assemble(protocol.Header{DeviceID: 0, MessageCount: 1}), "zero_device"},
		{"zero count", 1001, assemble(protocol.Header{DeviceID: 1001, MessageCount: 0}), "bad_count"},
		{"count over 4096", 1002, assemble(protocol.Header{DeviceID: 1002, MessageCount: protocol.MaxMessages + 1}), "bad_count"},
		{"truncated body", 31337, good[:len(good)-1], "truncated"},
		{"header only", 31337, good[:protocol.HeaderLenV2], "truncated"},
		{"trailing bytes", 31337, append(bytes.Clone(good), 0xAA, 0xBB), "trailing_bytes"},
	}
	want := map[string]int{}
	for _, c := range cases {
		r := f.post(t, c.pkg, bearerFor(testSecret, c.id))
		if r.code != http.StatusUnprocessableEntity || r.errWord != c.reason {
			t.Errorf("%s: %s, want 422 %s", c.name, describe(r), c.reason)
		}
		want[string(c.pkg)]++
	}
	got := readTopic(t, f.kafka, testDLQ, len(cases))
	for _, m := range got {
		env, err := records.EnvelopeCodec{}.Decode(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		var c *struct {
			name   string
			id     uint64
			pkg    []byte
			reason string
		}
		for i := range cases {
			if bytes.Equal(cases[i].pkg, env.Value) {
				c = &cases[i]
			}
		}
		if c == nil {
			t.Errorf("envelope of a package never sent: %+v", env)
			continue
		}
		key := strconv.FormatUint(c.id, 10)
		received := testNow.Truncate(time.Millisecond)
		if env.Stage != "edge" || env.Reason != c.reason || !strings.Contains(env.Error, c.reason) ||
			env.Topic != testRaw || env.Partition != -1 || env.Offset != -1 ||
			string(env.Key) != key || env.Attempts != 1 ||
			!env.Timestamp.Equal(received) || !env.FirstFailure.Equal(received) || !env.LastFailure.Equal(received) {
			t.Errorf("%s: envelope %+v", c.name, env)
		}
		if len(env.Headers) != 2 || env.Headers[0].Key != HeaderReceivedMs || string(env.Headers[0].Value) != msString(testNow) ||
			env.Headers[1].Key != HeaderEdgeID || string(env.Headers[1].Value) != testEdgeID {
			t.Errorf("%s: envelope headers %+v", c.name, env.Headers)
		}
		if string(m.Key) != key {
			t.Errorf("%s: DLQ record key %q, want %q", c.name, m.Key, key)
		}
		if want := topology.Partition(m.Key, testPartitions); m.Partition != want {
			t.Errorf("%s: DLQ record on partition %d, want %d", c.name, m.Partition, want)
		}
		if h := headerMap(m.Headers); h[HeaderReceivedMs] != msString(testNow) || h[HeaderEdgeID] != testEdgeID {
			t.Errorf("%s: DLQ record headers %v", c.name, h)
		}
	}
	if n := topicSize(t, f.kafka, testRaw); n != 0 {
		t.Errorf("raw topic holds %d records, want none", n)
	}
	if n := metric(t, f.reg, "watershed_edge_rejected_total", "reason", "bad_count"); n != 2 {
		t.Errorf("rejected_total{reason=bad_count} = %v, want 2", n)
	}
	if n := metric(t, f.reg, "watershed_edge_requests_total", "code", "422"); n != float64(len(cases)) {
		t.Errorf("requests_total{code=422} = %v", n)
	}
}

func TestOverloadIs429(t *testing.T) {
	acquired := make(chan struct{}, 8)
	f := newFixture(t, func(o *Options) { o.MaxInFlightBytes = MinInFlightBytes }, func(e *Edge) {
		e.hookAcquired = func() { acquired <- struct{}{} }
	})
	// A: the largest version 1 package, whose body is held back; it
	// takes nearly the whole budget as soon as its headers arrive.
	const idA, idB = 1, 2
	big := protocol.AppendHeader(nil, protocol.Header{Version: 1, DeviceID: idA, MessageCount: 1, BodyLen: protocol.MaxBodyLen})
	big = append(big, make([]byte, protocol.MaxBodyLen)...)
	// Its request goes over a raw connection, so that its headers are
	// sent at once and its body only later.
	conn, err := net.Dial("tcp", f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Its package header goes with the request's headers: the edge takes
	// budget once it has checked the token against it.
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: edge\r\nAuthorization: %s\r\nContent-Length: %d\r\n\r\n", Path, bearerFor(testSecret, idA), len(big))
	if _, err := conn.Write(big[:protocol.HeaderLenV1]); err != nil {
		t.Fatal(err)
	}
	<-acquired
	if n := metric(t, f.reg, "watershed_edge_inflight_bytes", "", ""); n != float64(len(big)) {
		t.Errorf("inflight_bytes = %v while A is read, want %d", n, len(big))
	}

	// B does not fit: 429 with Retry-After, before its body is read.
	small := manyMessages(t, idB, 400)
	if free := MinInFlightBytes - len(big); len(small) <= free {
		t.Fatalf("B of %d bytes would fit the %d bytes left", len(small), free)
	}
	r := f.post(t, small, bearerFor(testSecret, idB))
	if r.code != http.StatusTooManyRequests || r.errWord != "overloaded" || r.retryAfter != "1" {
		t.Errorf("B while A holds the budget: %s, want 429 overloaded, Retry-After 1", describe(r))
	}
	if n := metric(t, f.reg, "watershed_edge_rejected_total", "reason", "overloaded"); n != 1 {
		t.Errorf("rejected_total{reason=overloaded} = %v", n)
	}

	// A completes, and its bytes are given back when Kafka answered.
	if _, err := conn.Write(big[protocol.HeaderLenV1:]); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := readResult(t, resp); r.code != http.StatusAccepted {
		t.Fatalf("A: %s, want 202", describe(r))
	}
	if n := metric(t, f.reg, "watershed_edge_inflight_bytes", "", ""); n != 0 {
		t.Errorf("inflight_bytes = %v after A was answered", n)
	}
	if r := f.post(t, small, bearerFor(testSecret, idB)); r.code != http.StatusAccepted {
		t.Errorf("B after A: %s, want 202", describe(r))
	}
}

func TestLargestDeadLetterFitsTheSmallestBudget(t *testing.T) {
	// The largest package that fails check 4 needs room for its envelope,
	// which is a little larger than the package: the smallest budget has
	// it, so the package is not refused with 429 for ever.
	f := newFixture(t, func(o *Options) {
		o.MaxInFlightBytes = MinInFlightBytes
		o.EdgeID = strings.Repeat("e", maxEdgeIDLen)
		o.RawTopic = testRaw
	}, nil)
	const id = ^uint64(0)
	pkg := protocol.AppendHeader(nil, protocol.Header{Version: 1, DeviceID: id, MessageCount: 1, BodyLen: protocol.MaxBodyLen})
	pkg = append(pkg, make([]byte, protocol.MaxBodyLen+2)...) // two trailing bytes
	if len(pkg) != MaxPackageBytes {
		t.Fatalf("package of %d bytes", len(pkg))
	}
	if r := f.post(t, pkg, bearerFor(testSecret, id)); r.code != http.StatusUnprocessableEntity || r.errWord != "trailing_bytes" {
		t.Fatalf("%s, want 422 trailing_bytes", describe(r))
	}
	env, err := records.EnvelopeCodec{}.Decode(readTopic(t, f.kafka, testDLQ, 1)[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(env.Value, pkg) {
		t.Error("the envelope does not hold the package")
	}
	if n := f.edge.budget.inUse(); n != 0 {
		t.Errorf("%d budget bytes held after the answer", n)
	}
}

func TestKafkaGoneIs503(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.ProduceTimeout = 2 * time.Second
		o.RetryAfter = 1500 * time.Millisecond
	}, nil)
	const id = 12
	if r := f.post(t, testPackage(t, id, true), bearerFor(testSecret, id)); r.code != http.StatusAccepted {
		t.Fatalf("before the broker closed: %s, want 202", describe(r))
	}
	f.broker.Close()
	for i := range 3 {
		r := f.post(t, testPackage(t, id+uint64(i), false), bearerFor(testSecret, id+uint64(i)))
		if r.code != http.StatusServiceUnavailable || r.errWord != "unavailable" || r.retryAfter != "2" {
			t.Errorf("post %d with the broker gone: %s, want 503 unavailable, Retry-After 2", i, describe(r))
		}
	}
	// A 422 needs the dead-letter write: without Kafka it is 503 too.
	bad := append(testPackage(t, id, false), 0)
	if r := f.post(t, bad, bearerFor(testSecret, id)); r.code != http.StatusServiceUnavailable {
		t.Errorf("trailing bytes with the broker gone: %s, want 503", describe(r))
	}
	if n := metric(t, f.reg, "watershed_edge_requests_total", "code", "202"); n != 1 {
		t.Errorf("requests_total{code=202} = %v, want 1", n)
	}
	// Records still in the producer's retries hold their bytes until
	// Kafka's answer; Close waits for it.
	if err := f.edge.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if n := f.edge.budget.inUse(); n != 0 {
		t.Errorf("%d budget bytes held after Close", n)
	}
}

func TestClosedEdgeAnswers503(t *testing.T) {
	f := newFixture(t, nil, nil)
	const id = 3
	if err := f.edge.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.edge.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := f.edge.Ready(); !errors.Is(err, ErrClosed) {
		t.Errorf("Ready after Close = %v, want ErrClosed", err)
	}
	if r := f.post(t, testPackage(t, id, true), bearerFor(testSecret, id)); r.code != http.StatusServiceUnavailable || r.retryAfter == "" {
		t.Errorf("after Close: %s, want 503 with Retry-After", describe(r))
	}
	if n := f.edge.budget.inUse(); n != 0 {
		t.Errorf("%d budget bytes held", n)
	}
}

func TestReadyNeedsTheTopics(t *testing.T) {
	_, k := startKafka(t)
	e, err := New(Options{Kafka: k, Secret: testSecret, RawTopic: testRaw, DeadLetterTopic: "no.such.topic"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Ready(); err == nil || !strings.Contains(err.Error(), "no.such.topic") {
		t.Errorf("Ready with a missing topic = %v", err)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	k := topology.Kafka{Brokers: []string{"127.0.0.1:1"}}
	for name, o := range map[string]Options{
		"no secret":       {Kafka: k},
		"no brokers":      {Secret: testSecret},
		"same topics":     {Kafka: k, Secret: testSecret, RawTopic: "a", DeadLetterTopic: "a"},
		"budget too low":  {Kafka: k, Secret: testSecret, MaxInFlightBytes: MinInFlightBytes - 1},
		"long edge id":    {Kafka: k, Secret: testSecret, EdgeID: strings.Repeat("e", 256)},
		"negative wait":   {Kafka: k, Secret: testSecret, ProduceTimeout: -time.Second},
		"broker not here": {Kafka: k, Secret: testSecret},
	} {
		if e, err := New(o); err == nil {
			e.Close()
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestToken(t *testing.T) {
	// Computed with: printf 42 | openssl dgst -sha256 -hmac secret
	if got := Token([]byte("secret"), 42); got != "93c121e7aa437a1e01e3c512c6f0ce3c821a839025dca4408f85616de4aaee70" {
		t.Errorf("Token(secret, 42) = %s", got)
	}
	if got := Token([]byte("k"), ^uint64(0)); got != "ce4b782bd2451af0e0ba523cabb2b5b585eaa7c4f1afc53d89cb4ac4db192ea9" {
		t.Errorf("Token(k, 2^64-1) = %s", got)
	}
	v := verifier{current: []byte("a"), previous: []byte("b")}
	if !v.verify(Token([]byte("a"), 1), 1) || !v.verify(Token([]byte("b"), 1), 1) || v.verify(Token([]byte("c"), 1), 1) || v.verify(Token([]byte("a"), 1), 2) {
		t.Error("verifier accepts the wrong tokens")
	}
	if (verifier{current: []byte("a")}).verify(Token(nil, 1), 1) {
		t.Error("without a previous secret, the empty key's token is accepted")
	}
}

// Ensure the test packages are what the tests assume.
func TestTestPackagesAreValid(t *testing.T) {
	for _, snappy := range []bool{false, true} {
		b := testPackage(t, 1, snappy)
		if _, err := protocol.Decode(b); err != nil {
			t.Fatal(err)
		}
		if binary.BigEndian.Uint64(b[4:]) != 1 {
			t.Fatal("device id not at offset 4")
		}
	}
}
