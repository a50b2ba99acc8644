package simulator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// PackagesPath is the ingest edge's endpoint, appended to an IngestURL
// that has no path.
const PackagesPath = "/v1/packages"

// RetryPolicy is how the simulated firmware retries a package answered 429
// or 503, or whose request failed.
type RetryPolicy struct {
	// MaxAttempts is the most requests per package (default 8); then the
	// package is given up and counted unsent.
	MaxAttempts int
	// BaseBackoff is the first backoff (default 200 ms); it doubles with
	// every attempt, with jitter, up to MaxBackoff.
	BaseBackoff time.Duration
	// MaxBackoff caps every wait, Retry-After included (default 10 s).
	MaxBackoff time.Duration
}

// Options configures a Simulator.
type Options struct {
	// IngestURL is the edge's base URL ("http://127.0.0.1:8080"), to which
	// PackagesPath is appended, or the full URL of the endpoint.
	IngestURL string
	// Secret is the edge's device secret, for the bearer tokens.
	Secret []byte
	// TokenVersion and TokenTTL are FleetConfig's: version 1 (default) or
	// 2 tokens, and how long a version 2 token is valid.
	TokenVersion int
	TokenTTL     time.Duration
	// Devices is the fleet size (default 100).
	Devices int
	// Rate is the pace in packages per second across the fleet (resends
	// included); 0 or less sends as fast as Concurrency allows.
	Rate float64
	// Duration stops generating new packages after this long (0: no limit).
	Duration time.Duration
	// Packages stops after this many packages (0: no limit).
	Packages int
	// Seed makes the generated packages deterministic.
	Seed int64
	// Faults sets the fault rates: DefaultFaultMix for every kind, the
	// zero FaultMix for none.
	Faults FaultMix
	// MessagesPerPackage bounds the regular messages of a package
	// (default 10 to 40).
	MessagesPerPackage IntRange
	// Concurrency bounds the packages in flight, retries included
	// (default 16).
	Concurrency int
	// HTTPClient sends the requests (default: a client keeping up to
	// Concurrency idle connections).
	HTTPClient *http.Client
	// RequestTimeout bounds each request (default 10 s). A request in
	// flight when Run's context ends is allowed to finish within it, so
	// that its answer is known.
	RequestTimeout time.Duration
	// Retry is the retry policy; zero fields take their defaults.
	Retry RetryPolicy
	// Logger receives progress and retries (default: discarded).
	Logger *slog.Logger
	// Now is the clock that message times follow (default time.Now).
	Now func() time.Time
	// MessageClock and Pause are FleetConfig's: a clock for the device
	// clocks other than Now, and devices that stop sending for a while.
	MessageClock func() time.Time
	Pause        Pause
	// StoredWindow, when above 0, bounds the truth's memory on long runs:
	// per device, only the stored messages within it of the newest are
	// kept in DeviceTruth.Stored (see NewPruningLedger; 2 h is safe). 0
	// keeps them all, for comparing with the sink's rows.
	StoredWindow time.Duration
}

// Simulator sends a Fleet's packages to the ingest edge and keeps the
// truth of the answers.
type Simulator struct {
	opts    Options
	url     string
	fleet   *Fleet
	devices []DeviceInfo
	ledger  *Ledger
	log     *slog.Logger
	ran     atomic.Bool
}

// New returns a Simulator for opts.
func New(opts Options) (*Simulator, error) {
	u, err := url.Parse(opts.IngestURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: ingest URL %q", ErrConfig, opts.IngestURL)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = PackagesPath
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 16
	}
	if opts.Concurrency < 0 || opts.Packages < 0 || opts.Duration < 0 {
		return nil, fmt.Errorf("%w: negative concurrency, packages or duration", ErrConfig)
	}
	if opts.HTTPClient == nil {
		// Keep a connection per concurrent package rather than the
		// default two per host.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = opts.Concurrency
		opts.HTTPClient = &http.Client{Transport: tr}
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	if opts.Retry.MaxAttempts <= 0 {
		opts.Retry.MaxAttempts = 8
	}
	if opts.Retry.BaseBackoff <= 0 {
		opts.Retry.BaseBackoff = 200 * time.Millisecond
	}
	if opts.Retry.MaxBackoff <= 0 {
		opts.Retry.MaxBackoff = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	fleet, err := NewFleet(FleetConfig{
		Seed: opts.Seed, Devices: opts.Devices, Secret: opts.Secret, Faults: opts.Faults,
		MessagesPerPackage: opts.MessagesPerPackage, Now: opts.Now, MessageClock: opts.MessageClock, Pause: opts.Pause,
		TokenVersion: opts.TokenVersion, TokenTTL: opts.TokenTTL,
	})
	if err != nil {
		return nil, err
	}
	return &Simulator{
		opts: opts, url: u.String(), fleet: fleet, devices: fleet.Devices(),
		ledger: NewPruningLedger(opts.StoredWindow), log: opts.Logger,
	}, nil
}

// Devices returns the simulated devices.
func (s *Simulator) Devices() []DeviceInfo { return append([]DeviceInfo(nil), s.devices...) }

// Truth returns a deep copy of the truth so far. It is safe to call while
// Run runs; after Run returns it is final.
func (s *Simulator) Truth() Truth { return s.ledger.Truth() }

// Summary returns the truth's totals so far. It is cheaper than Truth and
// safe to call while Run runs.
func (s *Simulator) Summary() Summary { return s.ledger.Summary() }

// ErrRunTwice is returned by a second call of Run.
var ErrRunTwice = errors.New("simulator: Run called twice")

// Run generates and sends packages until ctx ends, Duration has passed or
// Packages were generated, then waits for the packages in flight and their
// retries. A package waiting to be retried when ctx ends is given up and
// counted unsent. It returns ctx's error if ctx ended, nil when a limit
// was reached.
func (s *Simulator) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return ErrRunTwice
	}
	genCtx := ctx
	if s.opts.Duration > 0 {
		var cancel context.CancelFunc
		genCtx, cancel = context.WithTimeout(ctx, s.opts.Duration)
		defer cancel()
	}
	s.log.Info("simulator starting", "url", s.url, "devices", len(s.devices), "rate", s.opts.Rate,
		"duration", s.opts.Duration, "packages", s.opts.Packages, "seed", s.opts.Seed)
	pace := newPacer(s.opts.Rate)
	sem := make(chan struct{}, s.opts.Concurrency)
	var wg sync.WaitGroup
	var genErr error
loop:
	for n := 0; s.opts.Packages == 0 || n < s.opts.Packages; n++ {
		if err := pace.wait(genCtx); err != nil {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-genCtx.Done():
			break loop
		}
		p, err := s.fleet.Next()
		if err != nil {
			<-sem
			genErr = err
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.send(ctx, p)
		}()
	}
	wg.Wait()
	sum := s.Summary()
	s.log.Info("simulator stopped", "sent", sum.Sent, "unsent", sum.Unsent, "uncertain", sum.Uncertain,
		"unexpected", sum.Unexpected, "messages", sum.Messages, "duplicates", sum.Duplicates,
		"invalid", sum.Invalid, "packages_rejected", sum.PackagesRejected)
	if genErr != nil {
		return genErr
	}
	return ctx.Err()
}

// send posts p until it gets a final answer, gives up or ctx ends while it
// waits to retry.
func (s *Simulator) send(ctx context.Context, p *Package) {
	rng := rand.New(rand.NewPCG(uint64(s.opts.Seed), uint64(p.Seq)))
	uncertain := 0
	var since time.Time // the send of the first attempt that may have reached Kafka
	for attempt := 1; ; attempt++ {
		sent := s.opts.Now()
		code, retryAfter, err := s.post(ctx, p)
		answered := s.opts.Now()
		s.ledger.Attempt(code)
		if err == nil && code != http.StatusTooManyRequests && code != http.StatusServiceUnavailable {
			if code != p.Expect.Code {
				s.log.Warn("unexpected answer", "package", p.Seq, "device", p.Device, "faults", p.Faults,
					"status", code, "expected", p.Expect.Code)
			}
			// The stored copy may be an earlier attempt's: its receipt
			// lies between that attempt's send and this answer.
			if uncertain == 0 {
				since = sent
			}
			s.ledger.ApplyAt(p, code, uncertain, Between(since, answered))
			return
		}
		// A 429 means the edge shed the package before writing it, and a
		// failed dial never reached it; a 503 or any other failed request
		// may have reached Kafka after all.
		if code != http.StatusTooManyRequests && !neverSent(err) {
			if uncertain == 0 {
				since = sent
			}
			uncertain++
		}
		if attempt >= s.opts.Retry.MaxAttempts {
			s.log.Warn("package given up", "package", p.Seq, "device", p.Device, "attempts", attempt, "status", code, "err", err)
			s.ledger.Unsent(p, uncertain)
			return
		}
		delay := s.backoff(rng, attempt, retryAfter)
		s.log.Debug("retrying", "package", p.Seq, "device", p.Device, "attempt", attempt, "status", code, "err", err, "delay", delay)
		if !sleep(ctx, delay) {
			s.ledger.Unsent(p, uncertain)
			return
		}
	}
}

// post sends p once and returns the answer's status and Retry-After, or a
// status of 0 and the error of a failed request.
func (s *Simulator) post(ctx context.Context, p *Package) (code int, retryAfter time.Duration, err error) {
	// A request in flight is not abandoned when ctx ends: its answer
	// decides the truth.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, s.url, bytes.NewReader(p.Bytes))
	if err != nil {
		return 0, 0, fmt.Errorf("simulator: request: %w", err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Authorization", "Bearer "+p.Token)
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("simulator: post package %d: %w", p.Seq, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	_ = resp.Body.Close()
	return resp.StatusCode, parseRetryAfter(resp.Header.Get("Retry-After"), s.opts.Now()), nil
}

// backoff returns the wait before attempt+1: the exponential backoff with
// jitter (half to all of BaseBackoff << (attempt-1)), at least Retry-After,
// at most MaxBackoff.
func (s *Simulator) backoff(rng *rand.Rand, attempt int, retryAfter time.Duration) time.Duration {
	r := s.opts.Retry
	d := r.MaxBackoff
	if attempt-1 < 32 {
		if b := r.BaseBackoff << (attempt - 1); b > 0 && b < d {
			d = b
		}
	}
	d = d/2 + time.Duration(rng.Int64N(int64(d/2)+1))
	return min(max(d, retryAfter), r.MaxBackoff)
}

// neverSent reports whether err is a failure to connect, so that the
// request cannot have reached the edge.
func neverSent(err error) bool {
	var op *net.OpError
	return err != nil && errors.As(err, &op) && op.Op == "dial"
}

// parseRetryAfter reads a Retry-After value: delay seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, 3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// sleep waits d or until ctx ends; it reports whether it waited d.
func sleep(ctx context.Context, d time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// pacer is a token bucket: one token every interval, holding up to burst.
type pacer struct {
	interval time.Duration
	burst    time.Duration
	next     time.Time
}

func newPacer(rate float64) *pacer {
	if rate <= 0 {
		return &pacer{}
	}
	iv := time.Duration(float64(time.Second) / rate)
	if iv <= 0 {
		iv = 1
	}
	// Up to a tenth of a second's worth of packages may go at once after a
	// stall, at least one.
	return &pacer{interval: iv, burst: max(iv, 100*time.Millisecond)}
}

// wait takes a token, waiting for one if needed.
func (p *pacer) wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.interval == 0 {
		return nil
	}
	now := time.Now()
	if earliest := now.Add(-p.burst); p.next.Before(earliest) {
		p.next = earliest
	}
	d := p.next.Sub(now)
	p.next = p.next.Add(p.interval)
	if !sleep(ctx, d) {
		return ctx.Err()
	}
	return nil
}
