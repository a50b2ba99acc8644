package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/ingest"
	"github.com/watershed-io/watershed/internal/serve"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// Defaults of Options.
const (
	// DefaultRawTopic is the topic accepted packages are written to.
	DefaultRawTopic = ingest.RawTopic
	// DefaultDeadLetterTopic is the topic rejected but authenticated
	// packages are written to.
	DefaultDeadLetterTopic = ingest.DeadLetterTopic
	// DefaultMaxInFlightBytes bounds the request-body bytes held at once.
	DefaultMaxInFlightBytes = 64 << 20
	// DefaultProduceTimeout bounds the wait for Kafka's acknowledgement.
	DefaultProduceTimeout = 5 * time.Second
	// DefaultRetryAfter is what 429 and 503 answers tell devices to wait.
	DefaultRetryAfter = time.Second
	// DefaultMaxRateLimitedDevices bounds the devices the per-device rate
	// limiter tracks at once: about 64 MiB at 64 bytes a device.
	DefaultMaxRateLimitedDevices = 1 << 20
	// DefaultMaxDeviceInFlight is how many packages one device may have in
	// flight at once: a device sends one at a time, and one more while a
	// lost answer's request is still being served.
	DefaultMaxDeviceInFlight = 2
	// DefaultMaxUnauthenticatedPerClient bounds one client address's
	// requests that have not yet authenticated. Generous, since many
	// devices may share one carrier-grade NAT address.
	DefaultMaxUnauthenticatedPerClient = 32
	// DefaultBodyTimeout is the base of a request's read deadline: the
	// package header must arrive within it, and the body within it plus
	// the body's length at MinBodyRate.
	DefaultBodyTimeout = 5 * time.Second
	// DefaultMinBodyRate is the slowest body transfer, in bytes a second,
	// that the read deadline allows (128 kbit/s, a poor cellular uplink).
	DefaultMinBodyRate = 16 << 10
)

// MaxPackageBytes is the largest legal package: a version 2 header and a
// body of protocol.MaxBodyLen bytes. A longer request body is answered 413
// once that many bytes were read, and the rest is never read.
const MaxPackageBytes = protocol.HeaderLenV2 + protocol.MaxBodyLen

// MinInFlightBytes is the smallest MaxInFlightBytes: room for the largest
// package, or for its dead-letter envelope (the package and at most a few
// hundred bytes more), so that no package is refused for good.
const MinInFlightBytes = MaxPackageBytes + 4<<10

// maxEdgeIDLen bounds Options.EdgeID, which every record carries.
const maxEdgeIDLen = 255

// Stage is the Stage of the dead-letter envelopes the edge writes.
const Stage = ingest.Stage

// Path is where Handler serves the package endpoint (method POST).
const Path = "/v1/packages"

// ErrClosed is returned by Ready after Close.
var ErrClosed = errors.New("edge: closed")

// Options configure an Edge. Zero values take the defaults shown.
type Options struct {
	// Kafka reaches the cluster; the producer uses kafkaclient.ProducerConfig(Kafka).
	Kafka topology.Kafka
	// RawTopic receives accepted packages (DefaultRawTopic).
	RawTopic string
	// DeadLetterTopic receives authenticated packages that fail package
	// checks 3-4 (DefaultDeadLetterTopic).
	DeadLetterTopic string
	// Secret keys the device tokens; required.
	Secret []byte
	// PreviousSecret, when set, is also accepted, so that the secret can be
	// rotated without rejecting devices that still hold old tokens.
	PreviousSecret []byte
	// RefuseV1Tokens refuses version 1 tokens (Token), which never expire;
	// version 2 tokens (TokenV2) are always accepted. Accepted version 1
	// tokens are counted in watershed_edge_v1_tokens_total, so that an
	// operator sees when the fleet has moved.
	RefuseV1Tokens bool
	// RevocationFile, when set, lists revoked devices (see
	// parseRevocations' format in docs/security.md); it must exist. It is
	// read again when it changes (checked every RevocationCheckInterval,
	// DefaultRevocationCheckInterval) and on ReloadRevocations.
	RevocationFile          string
	RevocationCheckInterval time.Duration
	// EdgeID names this replica in the HeaderEdgeID header, at most 255
	// bytes (the host name).
	EdgeID string
	// MaxInFlightBytes bounds the request-body bytes held at once, from
	// reading until Kafka answered; beyond it requests are answered 429
	// (DefaultMaxInFlightBytes; at least MinInFlightBytes).
	MaxInFlightBytes int64
	// ProduceTimeout bounds the wait for Kafka's acknowledgement, after
	// which the request is answered 503 (DefaultProduceTimeout).
	ProduceTimeout time.Duration
	// RetryAfter is the Retry-After of 429 and 503 answers, rounded up to
	// whole seconds (DefaultRetryAfter); a rate-limited device is told
	// when its bucket has a token again instead.
	RetryAfter time.Duration
	// DeviceRate is the sustained packages per second each device may
	// send; 0 turns the per-device rate limit off. Requests over it are
	// answered 429 with a Retry-After computed from the device's bucket.
	// The limit is checked after the token, so that only a device's own
	// token can spend its bucket.
	DeviceRate float64
	// DeviceBurst is how many packages a device may send at once after
	// being quiet (its bucket's size); at least 1 when DeviceRate is set.
	DeviceBurst int
	// MaxRateLimitedDevices bounds the devices whose buckets are kept at
	// once (DefaultMaxRateLimitedDevices), about 64 bytes each. Buckets
	// that have refilled are dropped first; past the bound an arbitrary
	// device's bucket is dropped, which gives it a fresh burst. Set it
	// above the fleet's size.
	MaxRateLimitedDevices int
	// DeviceByteRate is the sustained package bytes per second each
	// device may send; 0 turns the byte limit off. Requests over it are
	// answered 429 with a Retry-After from the device's byte bucket.
	DeviceByteRate float64
	// DeviceByteBurst is the size of a device's byte bucket; at least
	// MaxPackageBytes when DeviceByteRate is set, so that every legal
	// package can be sent.
	DeviceByteBurst int64
	// MaxDeviceInFlight bounds the packages of one device handled at once
	// (DefaultMaxDeviceInFlight); more are answered 429 rate_limited.
	MaxDeviceInFlight int
	// MaxUnauthenticatedPerClient bounds the requests of one client
	// address (an IPv6 client's /64) that have not authenticated yet
	// (DefaultMaxUnauthenticatedPerClient); more are answered 429 at once.
	MaxUnauthenticatedPerClient int
	// TrustedProxies are the peers whose ProxyHeader names the client
	// address; without them no header is believed.
	TrustedProxies []netip.Prefix
	// ProxyHeader is the header the trusted proxies write the client
	// address to: HeaderXForwardedFor (the default) or HeaderForwarded.
	// Only that one is read.
	ProxyHeader string
	// BodyTimeout and MinBodyRate set each request's read deadline: the
	// package header within BodyTimeout of the handler's start, and the
	// rest within BodyTimeout plus its length at MinBodyRate bytes a
	// second (DefaultBodyTimeout, DefaultMinBodyRate).
	BodyTimeout time.Duration
	MinBodyRate int64
	// Registerer receives the edge's metrics; nil keeps them unregistered.
	// The global registry is never used unless passed here.
	Registerer prometheus.Registerer
	// Logger receives the edge's logs (slog.Default()).
	Logger *slog.Logger
	// Now returns the receive time of a request (time.Now); for tests.
	Now func() time.Time
}

// Edge is the ingest edge. It is stateless: any number of replicas may run
// against the same topics. Its methods are safe for concurrent use.
type Edge struct {
	opts       Options
	verifier   verifier
	retryAfter string
	// receivedKey and edgeIDHeader are the parts of every record's
	// headers that do not change: the producer only reads them.
	receivedKey  []byte
	edgeIDHeader sarama.RecordHeader
	client       sarama.Client
	producer     sarama.AsyncProducer
	budget       *budget
	limiter      *limiter // nil without a per-device rate limit
	// unauthenticated counts the requests of each client address that
	// have not authenticated yet; deviceInFlight the packages of each
	// device being handled.
	unauthenticated *serve.Counter[netip.Addr]
	deviceInFlight  *serve.Counter[uint64]
	metrics         *metrics
	// revocations is nil without a revocation file; stopWatch ends its
	// watcher.
	revocations *revocations
	stopWatch   context.CancelFunc
	watching    sync.WaitGroup
	log         *slog.Logger

	// mu guards closed and orders Close after every send to the
	// producer's input: handlers hold it for reading while they send.
	mu     sync.RWMutex
	closed bool
	// results ends when the producer's result channels are closed.
	results   sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	// hookAcquired, when set (by tests, before serving), is called after a
	// request's first bytes of budget were taken and before its body is
	// read.
	hookAcquired func()
}

// New validates opts, connects to Kafka and starts the producer. Call
// Close to stop it. The topics are not checked here (Ready does): the
// topology's EnsureTopics creates them.
func New(opts Options) (*Edge, error) {
	if len(opts.Secret) == 0 {
		return nil, errors.New("edge: no device secret given")
	}
	if len(opts.Kafka.Brokers) == 0 {
		return nil, errors.New("edge: no Kafka brokers given")
	}
	if opts.RawTopic == "" {
		opts.RawTopic = DefaultRawTopic
	}
	if opts.DeadLetterTopic == "" {
		opts.DeadLetterTopic = DefaultDeadLetterTopic
	}
	if opts.RawTopic == opts.DeadLetterTopic {
		return nil, fmt.Errorf("edge: raw and dead-letter topics are both %q", opts.RawTopic)
	}
	if opts.EdgeID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "edge"
		}
		opts.EdgeID = h
	}
	if opts.MaxInFlightBytes == 0 {
		opts.MaxInFlightBytes = DefaultMaxInFlightBytes
	}
	if len(opts.EdgeID) > maxEdgeIDLen {
		return nil, fmt.Errorf("edge: EdgeID of %d bytes, over %d", len(opts.EdgeID), maxEdgeIDLen)
	}
	if opts.MaxInFlightBytes < MinInFlightBytes {
		return nil, fmt.Errorf("edge: MaxInFlightBytes %d is under the minimum %d (the largest package and its dead-letter envelope)", opts.MaxInFlightBytes, MinInFlightBytes)
	}
	if opts.ProduceTimeout == 0 {
		opts.ProduceTimeout = DefaultProduceTimeout
	}
	if opts.ProduceTimeout < 0 {
		return nil, fmt.Errorf("edge: negative ProduceTimeout %v", opts.ProduceTimeout)
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = DefaultRetryAfter
	}
	if opts.DeviceRate < 0 || math.IsNaN(opts.DeviceRate) || math.IsInf(opts.DeviceRate, 0) {
		return nil, fmt.Errorf("edge: DeviceRate %v is not a finite rate of at least 0", opts.DeviceRate)
	}
	if opts.DeviceRate > 0 && opts.DeviceBurst < 1 {
		return nil, fmt.Errorf("edge: DeviceBurst %d: a device must be able to send at least 1 package", opts.DeviceBurst)
	}
	if opts.MaxRateLimitedDevices == 0 {
		opts.MaxRateLimitedDevices = DefaultMaxRateLimitedDevices
	}
	if opts.MaxRateLimitedDevices < 0 {
		return nil, fmt.Errorf("edge: negative MaxRateLimitedDevices %d", opts.MaxRateLimitedDevices)
	}
	if opts.DeviceByteRate < 0 || math.IsNaN(opts.DeviceByteRate) || math.IsInf(opts.DeviceByteRate, 0) {
		return nil, fmt.Errorf("edge: DeviceByteRate %v is not a finite rate of at least 0", opts.DeviceByteRate)
	}
	if opts.DeviceByteRate > 0 && opts.DeviceByteBurst < MaxPackageBytes {
		return nil, fmt.Errorf("edge: DeviceByteBurst %d is under the largest package, %d bytes", opts.DeviceByteBurst, MaxPackageBytes)
	}
	for _, d := range []struct {
		v    *int
		def  int
		name string
	}{
		{&opts.MaxDeviceInFlight, DefaultMaxDeviceInFlight, "MaxDeviceInFlight"},
		{&opts.MaxUnauthenticatedPerClient, DefaultMaxUnauthenticatedPerClient, "MaxUnauthenticatedPerClient"},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
		if *d.v < 0 || *d.v > math.MaxInt32 {
			return nil, fmt.Errorf("edge: %s %d out of range", d.name, *d.v)
		}
	}
	if opts.BodyTimeout == 0 {
		opts.BodyTimeout = DefaultBodyTimeout
	}
	if opts.MinBodyRate == 0 {
		opts.MinBodyRate = DefaultMinBodyRate
	}
	if opts.BodyTimeout < 0 || opts.MinBodyRate < 0 {
		return nil, fmt.Errorf("edge: negative BodyTimeout %v or MinBodyRate %d", opts.BodyTimeout, opts.MinBodyRate)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RevocationCheckInterval == 0 {
		opts.RevocationCheckInterval = DefaultRevocationCheckInterval
	}
	if opts.RevocationCheckInterval < 0 {
		return nil, fmt.Errorf("edge: negative RevocationCheckInterval %v", opts.RevocationCheckInterval)
	}
	ver, err := newVerifier(opts.Secret, opts.PreviousSecret)
	if err != nil {
		return nil, err
	}
	var revs *revocations
	if opts.RevocationFile != "" {
		if revs, err = newRevocations(opts.RevocationFile); err != nil {
			return nil, err
		}
	}
	// Connect before registering the metrics, so that New may be called
	// again with the same registry while the brokers are away.
	client, err := sarama.NewClient(opts.Kafka.Brokers, kafkaclient.ProducerConfig(opts.Kafka))
	if err != nil {
		return nil, fmt.Errorf("edge: connect to Kafka: %w", err)
	}
	producer, err := sarama.NewAsyncProducerFromClient(client)
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("edge: start producer: %w", err)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		_ = producer.Close()
		_ = client.Close()
		return nil, err
	}
	e := &Edge{
		opts:         opts,
		verifier:     ver,
		retryAfter:   strconv.FormatInt(int64(math.Ceil(opts.RetryAfter.Seconds())), 10),
		receivedKey:  []byte(HeaderReceivedMs),
		edgeIDHeader: sarama.RecordHeader{Key: []byte(HeaderEdgeID), Value: []byte(opts.EdgeID)},
		client:       client,
		producer:     producer,
		budget:       &budget{max: opts.MaxInFlightBytes, gauge: m.inflight.Set},
		metrics:      m,
		log:          opts.Logger.With("component", "edge", "edge_id", opts.EdgeID),

		unauthenticated: serve.NewCounter[netip.Addr](opts.MaxUnauthenticatedPerClient),
		deviceInFlight:  serve.NewCounter[uint64](opts.MaxDeviceInFlight),
		revocations:     revs,
		stopWatch:       func() {},
	}
	if revs != nil {
		m.revokedDevices.Set(float64(len(*revs.m.Load())))
		ctx, cancel := context.WithCancel(context.Background())
		e.stopWatch = cancel
		e.watching.Go(func() { e.watchRevocations(ctx) })
	}
	if opts.DeviceRate > 0 || opts.DeviceByteRate > 0 {
		e.limiter = newLimiter(
			dimension{rate: opts.DeviceRate, burst: float64(opts.DeviceBurst)},
			dimension{rate: opts.DeviceByteRate, burst: float64(opts.DeviceByteBurst)},
			opts.MaxRateLimitedDevices, time.Now,
			func(d int) { m.rateLimitedDevices.Add(float64(d)) })
	}
	e.results.Add(2)
	go func() {
		defer e.results.Done()
		for msg := range producer.Successes() {
			e.finish(msg, nil)
		}
	}()
	go func() {
		defer e.results.Done()
		for perr := range producer.Errors() {
			e.finish(perr.Msg, perr.Err)
		}
	}()
	return e, nil
}

// Handler returns the HTTP handler of POST /v1/packages. The caller mounts
// it (with the operational endpoints beside it).
func (e *Edge) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+Path, e.handlePackage)
	return mux
}

// DefersAdmission reports whether r is a package request, whose concurrency
// slot the edge takes itself once the request has authenticated: pass it
// as serve.Options.DeferAdmission.
func DefersAdmission(r *http.Request) bool { return r.URL.Path == Path }

// Ready returns nil when the edge can take packages: it is not closed and
// both topics are known to Kafka with writable partitions.
func (e *Edge) Ready() error {
	e.mu.RLock()
	closed := e.closed
	e.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	for _, t := range []string{e.opts.RawTopic, e.opts.DeadLetterTopic} {
		ps, err := e.client.WritablePartitions(t)
		if err != nil {
			return fmt.Errorf("edge: topic %s: %w", t, err)
		}
		if len(ps) == 0 {
			return fmt.Errorf("edge: topic %s has no writable partitions", t)
		}
	}
	return nil
}

// Close stops taking packages (later requests are answered 503), waits
// for the records already handed to the producer to be answered by Kafka
// (their requests get their answers), and closes the producer and the
// Kafka client. Stop the HTTP server first, so that in-flight requests
// finish. Close is idempotent.
func (e *Edge) Close() error {
	e.closeOnce.Do(func() {
		e.stopWatch()
		e.watching.Wait()
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		// No handler sends to the producer from here on. AsyncClose
		// flushes what it holds and reports every result before closing
		// the result channels; Close would take some of them from the
		// waiting requests.
		e.producer.AsyncClose()
		e.results.Wait()
		if err := e.client.Close(); err != nil {
			e.closeErr = fmt.Errorf("edge: close Kafka client: %w", err)
		}
	})
	return e.closeErr
}

// pending is a record handed to the producer, carried in its Metadata.
type pending struct {
	start time.Time
	// held are the budget bytes the record holds until Kafka answers.
	held int64
	// done receives Kafka's answer; it has room for it.
	done chan error
}

// finish takes Kafka's answer for msg.
func (e *Edge) finish(msg *sarama.ProducerMessage, err error) {
	p, ok := msg.Metadata.(*pending)
	if !ok {
		e.log.Error("producer result without edge metadata", "topic", msg.Topic, "error", err)
		return
	}
	e.metrics.produceDuration.Observe(time.Since(p.start).Seconds())
	e.budget.release(p.held)
	p.done <- err
}

// Errors of produce that are not Kafka's.
var (
	errProduceTimeout = errors.New("edge: Kafka did not answer in time")
	errClosing        = errors.New("edge: closing")
)

// produce writes one record and waits for Kafka's answer, at most
// ProduceTimeout. It takes over held budget bytes: they are released when
// Kafka answers, or here if the record never reached the producer.
func (e *Edge) produce(ctx context.Context, topic string, key, value []byte, headers []sarama.RecordHeader, ts time.Time, held int64) error {
	timer := time.NewTimer(e.opts.ProduceTimeout)
	defer timer.Stop()
	p := &pending{held: held, done: make(chan error, 1)}
	msg := &sarama.ProducerMessage{
		Topic:     topic,
		Key:       sarama.ByteEncoder(key),
		Value:     sarama.ByteEncoder(value),
		Headers:   headers,
		Timestamp: ts,
		Metadata:  p,
	}
	e.mu.RLock()
	if e.closed {
		e.mu.RUnlock()
		e.budget.release(held)
		return errClosing
	}
	p.start = time.Now()
	select {
	case e.producer.Input() <- msg:
		e.mu.RUnlock()
	case <-timer.C:
		e.mu.RUnlock()
		e.budget.release(held)
		return errProduceTimeout
	case <-ctx.Done():
		e.mu.RUnlock()
		e.budget.release(held)
		return fmt.Errorf("edge: produce: %w", ctx.Err())
	}
	select {
	case err := <-p.done:
		if err != nil {
			return fmt.Errorf("edge: produce to %s: %w", topic, err)
		}
		return nil
	case <-timer.C:
		return errProduceTimeout
	case <-ctx.Done():
		return fmt.Errorf("edge: produce: %w", ctx.Err())
	}
}

// Reasons of rejected_total that are not protocol reason words.
const (
	reasonMissingToken = "missing_token"
	reasonBadToken     = "bad_token"
	reasonOverloaded   = "overloaded"
	reasonUnavailable  = "unavailable"
	reasonBadRequest   = "bad_request"
	reasonRateLimited  = "rate_limited"
	// reasonClientLimit: the client address had its maximum of
	// unauthenticated requests; reasonDeviceInFlight: the device had its
	// maximum of packages in flight.
	reasonClientLimit    = "client_limit"
	reasonDeviceInFlight = "device_in_flight"
)

// errOverloaded and errTooLarge are readBody's outcomes besides read
// errors.
var (
	errOverloaded = errors.New("edge: in-flight byte budget spent")
	errTooLarge   = errors.New("edge: request body over the largest package")
)

// readStep is the first buffer size, and the smallest growth, for a body
// of unknown length.
const readStep = 32 << 10

// readBody reads the rest of the request body after its first bytes,
// prefix, into a buffer of size bytes (at least len(prefix)) that grows up
// to MaxPackageBytes, taking budget bytes for the buffer before it grows.
// It returns the body and the budget bytes held (also on error: the caller
// releases them).
func (e *Edge) readBody(body io.Reader, prefix []byte, size int64, known bool) ([]byte, int64, error) {
	if !e.budget.acquire(size) {
		return nil, 0, errOverloaded
	}
	held := size
	if e.hookAcquired != nil {
		e.hookAcquired()
	}
	buf := append(make([]byte, 0, size), prefix...)
	for {
		if len(buf) == cap(buf) {
			// Expect the end (net/http ends a body at its Content-Length,
			// a chunked body usually ends at the length its header
			// declares); grow only when more comes.
			var probe [1]byte
			n, err := body.Read(probe[:])
			switch {
			case n == 0 && err == io.EOF:
				return buf, held, nil
			case isMaxBytes(err) || n > 0 && (known || cap(buf) >= MaxPackageBytes):
				return nil, held, errTooLarge
			case n == 0 && err != nil:
				return nil, held, fmt.Errorf("edge: read body: %w", err)
			case n == 0:
				continue
			}
			grow := max(int64(cap(buf)), readStep)
			grow = min(grow, MaxPackageBytes-int64(cap(buf)))
			if !e.budget.acquire(grow) {
				return nil, held, errOverloaded
			}
			held += grow
			nb := make([]byte, len(buf), int64(cap(buf))+grow)
			copy(nb, buf)
			buf = append(nb, probe[0])
			switch {
			case err == io.EOF:
				return buf, held, nil
			case err != nil:
				return nil, held, fmt.Errorf("edge: read body: %w", err)
			}
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case err == io.EOF:
			return buf, held, nil
		case isMaxBytes(err):
			return nil, held, errTooLarge
		case err != nil:
			return nil, held, fmt.Errorf("edge: read body: %w", err)
		}
	}
}

func isMaxBytes(err error) bool {
	var mb *http.MaxBytesError
	return errors.As(err, &mb)
}

// readHeader reads the package header of body into buf: its first 3 bytes
// and, when they name version 1 or 2, the rest of that version's header,
// and never more, so that a device waiting for an answer before it sends
// the rest is not kept waiting. It reports whether the body ended within
// them.
func readHeader(body io.Reader, buf *[protocol.HeaderLenV2]byte) ([]byte, bool, error) {
	n, err := io.ReadFull(body, buf[:3])
	if err == nil {
		hl := 3
		switch buf[2] {
		case 1:
			hl = protocol.HeaderLenV1
		case 2:
			hl = protocol.HeaderLenV2
		}
		var m int
		m, err = io.ReadFull(body, buf[3:hl])
		n += m
	}
	switch {
	case err == nil:
		return buf[:n], false, nil
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return buf[:n], true, nil
	default:
		return nil, false, fmt.Errorf("edge: read package header: %w", err)
	}
}

// readDeadline moves the request's read deadline to now plus the body
// timeout plus n bytes at the minimum rate. Servers that cannot (HTTP/2
// before Go 1.21's support, a ResponseWriter wrapped without Unwrap) keep
// their own read timeout.
func (e *Edge) readDeadline(rc *http.ResponseController, n int64) {
	d := e.opts.BodyTimeout + time.Duration(float64(n)/float64(e.opts.MinBodyRate)*float64(time.Second))
	_ = rc.SetReadDeadline(time.Now().Add(d))
}

// handlePackage serves POST /v1/packages; see the package comment.
//
// Until the token is checked against the package header's device id, a
// request holds nothing shared: no budget, no concurrency slot, only its
// client address's count of unauthenticated requests.
func (e *Edge) handlePackage(w http.ResponseWriter, r *http.Request) {
	received := time.UnixMilli(e.opts.Now().UnixMilli()).UTC()
	token, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		e.unauthorized(w, reasonMissingToken)
		return
	}
	known := r.ContentLength >= 0
	if known && r.ContentLength > MaxPackageBytes {
		e.reject(w, http.StatusRequestEntityTooLarge, protocol.ReasonTooLarge.String(), protocol.ReasonTooLarge.String())
		return
	}
	client := clientAddr(r, e.opts.TrustedProxies, e.opts.ProxyHeader)
	if !e.unauthenticated.Acquire(client) {
		w.Header().Set("Connection", "close")
		e.reject(w, http.StatusTooManyRequests, reasonClientLimit, reasonOverloaded)
		return
	}
	authenticating := true
	e.metrics.unauthenticated.Inc()
	endAuthentication := func() {
		if authenticating {
			authenticating = false
			e.unauthenticated.Release(client)
			e.metrics.unauthenticated.Dec()
		}
	}
	defer endAuthentication()
	rc := http.NewResponseController(w)
	e.readDeadline(rc, 0)
	rd := http.MaxBytesReader(w, r.Body, MaxPackageBytes)
	var hbuf [protocol.HeaderLenV2]byte
	prefix, ended, err := readHeader(rd, &hbuf)
	if err != nil {
		e.log.Debug("package header not read", "error", err)
		e.reject(w, http.StatusBadRequest, reasonBadRequest, reasonBadRequest)
		return
	}
	h, err := protocol.CheckHeader(prefix)
	var perr *protocol.PackageError
	if err != nil && (!errors.As(err, &perr) || !perr.HeaderTrusted()) {
		word := reasonBadRequest
		if perr != nil {
			word = perr.Reason.String()
		}
		e.reject(w, http.StatusBadRequest, word, word)
		return
	}
	if ok, reason := e.authenticate(token, h.DeviceID, received); !ok {
		e.unauthorized(w, reason)
		return
	}
	endAuthentication()

	// Authenticated: from here the request may hold a concurrency slot,
	// one of its device's in-flight places, and budget for its body.
	if !serve.Admit(w, r) {
		return
	}
	if !e.deviceInFlight.Acquire(h.DeviceID) {
		e.reject(w, http.StatusTooManyRequests, reasonDeviceInFlight, reasonRateLimited)
		return
	}
	defer e.deviceInFlight.Release(h.DeviceID)
	if perr != nil && perr.Reason == protocol.ReasonTooLarge {
		// body_len over the limit: nothing more is read.
		word := perr.Reason.String()
		e.reject(w, http.StatusRequestEntityTooLarge, word, word)
		return
	}
	hl := int64(protocol.HeaderLenV1)
	if h.Version == 2 {
		hl = protocol.HeaderLenV2
	}
	size := hl + int64(h.BodyLen) // the package's length by its header
	if known {
		size = r.ContentLength
	}
	size = max(size, int64(len(prefix)))
	if e.limiter != nil {
		if ok, wait := e.limiter.allow(h.DeviceID, size); !ok {
			// Whole seconds, rounded up: the tokens are there by then.
			w.Header().Set("Retry-After", strconv.FormatInt(max(1, int64(math.Ceil(wait.Seconds()))), 10))
			e.metrics.rateLimited.Inc()
			e.reject(w, http.StatusTooManyRequests, reasonRateLimited, reasonRateLimited)
			return
		}
	}
	if !ended {
		e.readDeadline(rc, size-int64(len(prefix)))
	}
	var body []byte
	var held int64
	if ended {
		body, held = prefix, int64(len(prefix))
		if !e.budget.acquire(held) {
			held, err = 0, errOverloaded
		}
	} else {
		body, held, err = e.readBody(rd, prefix, size, known)
	}
	defer func() { e.budget.release(held) }()
	switch {
	case errors.Is(err, errOverloaded):
		e.reject(w, http.StatusTooManyRequests, reasonOverloaded, reasonOverloaded)
		return
	case errors.Is(err, errTooLarge):
		e.reject(w, http.StatusRequestEntityTooLarge, protocol.ReasonTooLarge.String(), protocol.ReasonTooLarge.String())
		return
	case err != nil:
		e.log.Debug("request body not read", "error", err)
		e.reject(w, http.StatusBadRequest, reasonBadRequest, reasonBadRequest)
		return
	}
	e.metrics.packageBytes.Observe(float64(len(body)))
	// Checks 3-4 on the whole package; checks 1-2 passed on its header.
	h, err = protocol.CheckHeader(body)
	perr = nil
	if err != nil && !errors.As(err, &perr) {
		e.reject(w, http.StatusBadRequest, reasonBadRequest, reasonBadRequest)
		return
	}
	// The key and the receive time in one allocation: they live as long
	// as the record.
	ids := strconv.AppendUint(make([]byte, 0, 40), h.DeviceID, 10)
	kl := len(ids)
	ids = ingest.AppendReceivedMs(ids, received)
	key := ids[:kl:kl]
	headers := []sarama.RecordHeader{{Key: e.receivedKey, Value: ids[kl:]}, e.edgeIDHeader}

	if perr != nil {
		word := perr.Reason.String()
		if perr.Reason == protocol.ReasonTooLarge {
			e.reject(w, http.StatusRequestEntityTooLarge, word, word)
			return
		}
		env := records.AppendEnvelope(nil, records.Envelope{
			Stage:        Stage,
			Reason:       word,
			Error:        perr.Error(),
			Topic:        e.opts.RawTopic,
			Partition:    -1,
			Offset:       -1,
			Key:          key,
			Value:        body,
			Headers:      envelopeHeaders(headers),
			Timestamp:    received,
			Attempts:     1,
			FirstFailure: received,
			LastFailure:  received,
		})
		// The envelope holds a copy of the body, which is not used any
		// more: the envelope's bytes take the body's place in the budget.
		e.budget.release(held)
		held = 0
		if !e.budget.acquire(int64(len(env))) {
			e.reject(w, http.StatusTooManyRequests, reasonOverloaded, reasonOverloaded)
			return
		}
		if err := e.produce(r.Context(), e.opts.DeadLetterTopic, key, env, headers, received, int64(len(env))); err != nil {
			e.unavailable(w, "dead-letter produce failed", err, key)
			return
		}
		e.reject(w, http.StatusUnprocessableEntity, word, word)
		return
	}

	hand := held
	held = 0
	if err := e.produce(r.Context(), e.opts.RawTopic, key, body, headers, received, hand); err != nil {
		e.unavailable(w, "raw produce failed", err, key)
		return
	}
	e.accepted(w)
}

// acceptedBody is the body of every 202, as answer would write it.
const acceptedBody = `{"status":"accepted"}` + "\n"

// accepted answers 202 without encoding its constant body each time.
func (e *Edge) accepted(w http.ResponseWriter) {
	e.jsonHeaders(w)
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, acceptedBody)
	e.metrics.answered(http.StatusAccepted)
}

// jsonHeaders sets the headers of every answer.
func (e *Edge) jsonHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
}

// envelopeHeaders converts record headers for a dead-letter envelope.
func envelopeHeaders(hs []sarama.RecordHeader) []records.Header {
	out := make([]records.Header, len(hs))
	for i, h := range hs {
		out[i] = records.Header{Key: string(h.Key), Value: h.Value}
	}
	return out
}

// response is the JSON body of every answer.
type response struct {
	Status string `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
}

// answer writes a JSON response and counts it.
func (e *Edge) answer(w http.ResponseWriter, code int, body response) {
	b, _ := json.Marshal(body) // two strings: cannot fail
	e.jsonHeaders(w)
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
	e.metrics.answered(code)
}

// reject answers code with {"error": word}, counted under metric reason,
// with Retry-After for 429 and 503 (the edge's own, unless one is set).
func (e *Edge) reject(w http.ResponseWriter, code int, reason, word string) {
	if (code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable) && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", e.retryAfter)
	}
	e.metrics.rejected.WithLabelValues(reason).Inc()
	e.log.Debug("package rejected", "code", code, "reason", reason)
	e.answer(w, code, response{Error: word})
}

// unauthorized answers 401.
func (e *Edge) unauthorized(w http.ResponseWriter, reason string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="watershed"`)
	e.reject(w, http.StatusUnauthorized, reason, "unauthorized")
}

// unavailable answers 503 after a failed produce.
func (e *Edge) unavailable(w http.ResponseWriter, msg string, err error, key []byte) {
	e.log.Warn(msg, "device_id", string(key), "error", err)
	e.reject(w, http.StatusServiceUnavailable, reasonUnavailable, reasonUnavailable)
}
