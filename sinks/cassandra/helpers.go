package cassandra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/watershed-io/watershed/sinks"
)

// DayMs is the length of a day partition in milliseconds.
const DayMs = 24 * 60 * 60 * 1000

// MaxTimeMs is the latest message time a row can have: time_ms is a CQL
// bigint, and only times that fit it without wrapping keep their order in a
// partition. Later times (more than 292 million years ahead) are refused.
const MaxTimeMs = math.MaxInt64

// Day returns the day partition of a message time: the number of whole UTC
// days from the Unix epoch to timeMs (Unix milliseconds).
func Day(timeMs uint64) int64 { return int64(timeMs / DayMs) }

// DeviceKey maps a device id to the CQL bigint stored in device_id: the
// uint64 reinterpreted as an int64 in two's complement, so ids from 2^63
// up are stored as negative numbers (2^63 as -2^63, 2^64-1 as -1). The
// mapping is a bijection, so equality (all a partition key needs) is
// kept; device ids are never compared by range in CQL.
func DeviceKey(id uint64) int64 { return int64(id) }

// DeviceID is the inverse of DeviceKey.
func DeviceID(key int64) uint64 { return uint64(key) }

// ErrClosed is wrapped by the errors of every call on a closed Store. It is
// permanent: it does not wrap sinks.ErrUnavailable.
var ErrClosed = errors.New("cassandra: store closed")

// ErrTimeRange is wrapped by the error of Write for a reading whose message
// time is after MaxTimeMs. It is permanent.
var ErrTimeRange = errors.New("cassandra: message time beyond the bigint range")

// ErrAuthentication is wrapped by the error of Open when the cluster refuses
// the login: a wrong user name or password, or no login where the cluster
// requires one. It is permanent.
var ErrAuthentication = errors.New("cassandra: the cluster refused the login")

// loginRefused reports whether err, from creating a session, is the cluster
// refusing the login. gocql formats the handshake's error into text while it
// discovers the protocol version (the server's error is no longer in the
// chain), so past the typed check the text is what is left to read: gocql's
// own message when no authenticator was set, and Cassandra's when the
// credentials are wrong.
func loginRefused(err error) bool {
	var re gocql.RequestError
	if errors.As(err, &re) && re.Code() == gocql.ErrCodeCredentials {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "authentication required (using") ||
		strings.Contains(msg, "and/or password are incorrect") ||
		strings.Contains(msg, "AuthenticationException")
}

// classifyConnect classifies the error of creating a session: a refused
// login is ErrAuthentication (permanent), the rest as Classify does.
func classifyConnect(err error) error {
	if loginRefused(err) {
		return fmt.Errorf("%w: %w", ErrAuthentication, err)
	}
	return Classify(err)
}

// Permanent reports whether err is one that a retry cannot cure: an
// invalid query, a syntax error, missing rights or credentials, a value
// that does not marshal, a closed store or session, a message time out of
// range. Everything else (time-outs, unavailable replicas, overload, no
// hosts, connection errors, server errors, and errors not known to be
// permanent) may pass by itself; see Classify.
func Permanent(err error) bool {
	if err == nil {
		return false
	}
	var re gocql.RequestError
	if errors.As(err, &re) {
		// The server's codes that a retry cannot cure: the request itself,
		// the schema or the credentials are wrong.
		switch re.Code() {
		case gocql.ErrCodeProtocol, gocql.ErrCodeCredentials, gocql.ErrCodeSyntax,
			gocql.ErrCodeUnauthorized, gocql.ErrCodeInvalid, gocql.ErrCodeConfig,
			gocql.ErrCodeAlreadyExists, gocql.ErrCodeFunctionFailure:
			return true
		}
		return false
	}
	var me gocql.MarshalError
	var ue gocql.UnmarshalError
	switch {
	case errors.As(err, &me), errors.As(err, &ue),
		errors.Is(err, ErrClosed), errors.Is(err, ErrTimeRange), errors.Is(err, ErrAuthentication),
		errors.Is(err, gocql.ErrSessionClosed), errors.Is(err, gocql.ErrQueryArgLength),
		errors.Is(err, gocql.ErrUseStmt), errors.Is(err, gocql.ErrKeyspaceDoesNotExist),
		errors.Is(err, gocql.ErrNoKeyspace), errors.Is(err, gocql.ErrTooManyStmts):
		return true
	}
	return false
}

// Classify sorts err for the sink. Permanent errors are returned
// unchanged. A write the cluster answered and failed (a server error, a
// replica's write or read failure, which may be the rows' own doing) wraps
// sinks.ErrWriteFailed. Everything else wraps sinks.ErrUnavailable, an
// outage whatever a ping answers: too few replicas alive for the
// consistency (gocql.RequestErrUnavailable), write and read time-outs,
// overload, bootstrapping, no host reachable, connection errors, a done
// context, and errors not known to be anything else.
func Classify(err error) error {
	if err == nil || Permanent(err) || errors.Is(err, sinks.ErrUnavailable) || errors.Is(err, sinks.ErrWriteFailed) {
		return err
	}
	if !outage(err) && writeFailed(err) {
		return fmt.Errorf("%w: %w", sinks.ErrWriteFailed, err)
	}
	return fmt.Errorf("%w: %w", sinks.ErrUnavailable, err)
}

// outage reports whether err is one of gocql's answers that the cluster
// cannot serve the request now, by type (a type's code is only set on
// errors the driver parsed).
func outage(err error) bool {
	var (
		unavailable  *gocql.RequestErrUnavailable
		writeTimeout *gocql.RequestErrWriteTimeout
		readTimeout  *gocql.RequestErrReadTimeout
		overloaded   *gocql.RequestErrOverloaded
		bootstrap    *gocql.RequestErrBootstrapping
	)
	return errors.As(err, &unavailable) || errors.As(err, &writeTimeout) || errors.As(err, &readTimeout) ||
		errors.As(err, &overloaded) || errors.As(err, &bootstrap)
}

// writeFailed reports whether err is the cluster's answer that it tried
// the request and failed it: a server error, a replica's write or read
// failure.
func writeFailed(err error) bool {
	var (
		wf *gocql.RequestErrWriteFailure
		rf *gocql.RequestErrReadFailure
		re gocql.RequestError
	)
	if errors.As(err, &wf) || errors.As(err, &rf) {
		return true
	}
	if errors.As(err, &re) {
		switch re.Code() {
		case gocql.ErrCodeServer, gocql.ErrCodeWriteFailure, gocql.ErrCodeReadFailure:
			return true
		}
	}
	return false
}

// ParseConsistency parses a consistency level by its CQL name, in any case
// and with '-' or '_' (LOCAL_QUORUM, local-quorum, quorum, one, ...).
func ParseConsistency(s string) (gocql.Consistency, error) {
	var c gocql.Consistency
	name := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), "-", "_"))
	if err := c.UnmarshalText([]byte(name)); err != nil {
		return 0, fmt.Errorf("cassandra: consistency %q: want one of ANY, ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM, EACH_QUORUM, LOCAL_ONE", s)
	}
	return c, nil
}

// Replication is a keyspace's replication. The zero value is
// SimpleStrategy with replication factor 1.
type Replication struct {
	// Factor is SimpleStrategy's replication factor (0: 1). It is ignored
	// when DataCenters is set.
	Factor int
	// DataCenters, when set, selects NetworkTopologyStrategy with these
	// replication factors per data center.
	DataCenters map[string]int
}

// ParseReplication parses "3" (SimpleStrategy, factor 3) or
// "dc1:3,dc2:2" (NetworkTopologyStrategy); "" is the default.
func ParseReplication(s string) (Replication, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Replication{}, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		r := Replication{Factor: n}
		return r, r.validate()
	}
	r := Replication{DataCenters: map[string]int{}}
	for part := range strings.SplitSeq(s, ",") {
		dc, n, ok := strings.Cut(strings.TrimSpace(part), ":")
		f, err := strconv.Atoi(strings.TrimSpace(n))
		if !ok || err != nil {
			return Replication{}, fmt.Errorf("cassandra: replication %q: want a factor (3) or data centers with factors (dc1:3,dc2:2)", s)
		}
		r.DataCenters[strings.TrimSpace(dc)] = f
	}
	return r, r.validate()
}

var dcName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

func (r Replication) validate() error {
	if r.DataCenters == nil {
		if r.Factor < 0 {
			return fmt.Errorf("cassandra: replication factor %d: negative", r.Factor)
		}
		return nil
	}
	if len(r.DataCenters) == 0 {
		return errors.New("cassandra: replication: no data center")
	}
	for dc, f := range r.DataCenters {
		if !dcName.MatchString(dc) {
			return fmt.Errorf("cassandra: replication: data center name %q: want letters, digits, '_', '.', '-'", dc)
		}
		if f < 1 {
			return fmt.Errorf("cassandra: replication: data center %s: factor %d below 1", dc, f)
		}
	}
	return nil
}

// CQL returns the replication map as CQL, for CREATE KEYSPACE.
func (r Replication) CQL() string {
	if r.DataCenters == nil {
		return fmt.Sprintf("{'class': 'SimpleStrategy', 'replication_factor': %d}", max(r.Factor, 1))
	}
	dcs := make([]string, 0, len(r.DataCenters))
	for dc := range r.DataCenters {
		dcs = append(dcs, dc)
	}
	sort.Strings(dcs)
	var b strings.Builder
	b.WriteString("{'class': 'NetworkTopologyStrategy'")
	for _, dc := range dcs {
		fmt.Fprintf(&b, ", '%s': %d", dc, r.DataCenters[dc])
	}
	b.WriteString("}")
	return b.String()
}

// keyspaceName matches what Cassandra accepts as an unquoted keyspace
// name.
var keyspaceName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,47}$`)

// retryPolicy is gocql's capped exponential backoff with two changes: it
// gives up at once on errors that a retry cannot cure (Permanent), and its
// pause ends early when the query's context is done. gocql applies it
// only to queries marked idempotent, which every query of the store is.
type retryPolicy struct {
	gocql.ExponentialBackoffRetryPolicy
}

// Attempt implements gocql.RetryPolicy: it allows NumRetries retries and
// sleeps before each one, min * 2^(attempt-1) with ±min/2 jitter, capped
// at max, as gocql's own policy does.
func (p *retryPolicy) Attempt(q gocql.RetryableQuery) bool {
	n := q.Attempts()
	if n > p.NumRetries {
		return false
	}
	ctx := q.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if ctx.Err() != nil {
		return false
	}
	t := time.NewTimer(backoff(p.Min, p.Max, n))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// GetRetryType implements gocql.RetryPolicy.
func (p *retryPolicy) GetRetryType(err error) gocql.RetryType {
	if Permanent(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return gocql.Rethrow
	}
	return gocql.RetryNextHost
}

// backoff returns the pause before retry attempt n (1 for the first).
func backoff(minD, maxD time.Duration, n int) time.Duration {
	d := float64(minD) * math.Pow(2, float64(max(n, 1)-1))
	d += rand.Float64()*float64(minD) - float64(minD)/2
	if d > float64(maxD) {
		return maxD
	}
	return time.Duration(d)
}

// slogLogger adapts a *slog.Logger to gocql.StructuredLogger.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) log(level slog.Level, msg string, fields []gocql.LogField) {
	if !s.l.Enabled(context.Background(), level) {
		return
	}
	attrs := make([]slog.Attr, 0, len(fields))
	for _, f := range fields {
		attrs = append(attrs, slog.Any(f.Name, f.Value.Any()))
	}
	s.l.LogAttrs(context.Background(), level, "gocql: "+msg, attrs...)
}

// Error implements gocql.StructuredLogger.
func (s slogLogger) Error(msg string, fields ...gocql.LogField) { s.log(slog.LevelError, msg, fields) }

// Warning implements gocql.StructuredLogger.
func (s slogLogger) Warning(msg string, fields ...gocql.LogField) { s.log(slog.LevelWarn, msg, fields) }

// Info implements gocql.StructuredLogger. The driver's information is
// logged at debug level: it is chatty about connections.
func (s slogLogger) Info(msg string, fields ...gocql.LogField) { s.log(slog.LevelDebug, msg, fields) }

// Debug implements gocql.StructuredLogger.
func (s slogLogger) Debug(msg string, fields ...gocql.LogField) { s.log(slog.LevelDebug, msg, fields) }

// commonPort returns the port that every one of hosts names ("host:port"),
// and false when one names none or they differ.
func commonPort(hosts []string) (int, bool) {
	port := 0
	for _, h := range hosts {
		_, p, err := net.SplitHostPort(h)
		if err != nil {
			return 0, false
		}
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || (port != 0 && n != port) {
			return 0, false
		}
		port = n
	}
	return port, port != 0
}
