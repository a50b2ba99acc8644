package edge

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Token returns the version 1 bearer token of device deviceID under secret:
// the lowercase hex HMAC-SHA256 of the device id written in decimal ASCII.
// Devices (and the simulator) send it as "Authorization: Bearer TOKEN". It
// never expires; see TokenV2 for tokens that do.
func Token(secret []byte, deviceID uint64) string {
	var buf [2 * sha256.Size]byte
	return string(appendToken(buf[:0], secret, deviceID))
}

// appendToken appends Token(secret, deviceID) to dst.
func appendToken(dst, secret []byte, deviceID uint64) []byte {
	m := hmac.New(sha256.New, secret)
	var id [20]byte
	_, _ = m.Write(strconv.AppendUint(id[:0], deviceID, 10)) // hash.Hash never fails
	var sum [sha256.Size]byte
	return hex.AppendEncode(dst, m.Sum(sum[:0]))
}

// bearer returns the credentials of an Authorization header value of the
// Bearer scheme (the scheme name is case-insensitive), and false when there
// are none: no header, another scheme, or an empty token.
func bearer(v string) (string, bool) {
	const scheme = "bearer "
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	tok := strings.TrimSpace(v[len(scheme):])
	return tok, tok != ""
}

// Version 2 tokens (see docs/security.md):
//
//	"v2." base64url-without-padding( device_id uint64 | expires uint32 | generation uint32 | mac [32]byte )
//
// All integers big-endian; expires is in Unix seconds. mac is the
// HMAC-SHA256, under the device's key, of the byte 2 and the first 16 bytes.
// The device's key is HKDF-SHA256 of the fleet secret with salt v2Salt and
// info v2Info, device_id and generation: one device's key (or one
// generation of it) tells nothing of another's.
const (
	v2Prefix   = "v2."
	v2Fields   = 16
	v2Raw      = v2Fields + sha256.Size
	v2TokenLen = len(v2Prefix) + (v2Raw*8+5)/6
	v2Salt     = "watershed edge device tokens"
	v2Info     = "watershed device key v2"
)

// ErrTokenExpiry is returned by TokenV2 for an expiry outside what a token
// can hold (after 1970 and before 2106).
var ErrTokenExpiry = errors.New("edge: token expiry out of range")

// TokenV2 returns a version 2 token of device deviceID, valid until expires
// (to the second) and of key generation generation, under the fleet secret.
func TokenV2(secret []byte, deviceID uint64, expires time.Time, generation uint32) (string, error) {
	if expires.Unix() <= 0 || expires.Unix() > math.MaxUint32 {
		return "", fmt.Errorf("%w: %v", ErrTokenExpiry, expires)
	}
	prk, err := hkdf.Extract(sha256.New, secret, []byte(v2Salt))
	if err != nil {
		return "", fmt.Errorf("edge: derive token key: %w", err)
	}
	var raw [v2Raw]byte
	binary.BigEndian.PutUint64(raw[0:], deviceID)
	binary.BigEndian.PutUint32(raw[8:], uint32(expires.Unix()))
	binary.BigEndian.PutUint32(raw[12:], generation)
	if !v2MAC((*[sha256.Size]byte)(raw[v2Fields:]), prk, (*[v2Fields]byte)(raw[:v2Fields])) {
		return "", errors.New("edge: derive token key")
	}
	return v2Prefix + base64.RawURLEncoding.EncodeToString(raw[:]), nil
}

// v2MAC writes to dst the MAC of fields under the device key that prk
// derives for the fields' device and generation; false if HKDF refused
// (only in FIPS 140-only mode).
func v2MAC(dst *[sha256.Size]byte, prk []byte, fields *[v2Fields]byte) bool {
	var info [len(v2Info) + 12]byte
	copy(info[:], v2Info)
	copy(info[len(v2Info):], fields[0:8])   // device_id
	copy(info[len(v2Info)+8:], fields[12:]) // generation
	key, err := hkdf.Expand(sha256.New, prk, string(info[:]), sha256.Size)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, key)
	_, _ = m.Write([]byte{2})
	_, _ = m.Write(fields[:])
	m.Sum(dst[:0]) // dst has the room: Sum writes into it
	return true
}

// v2Token is a parsed version 2 token.
type v2Token struct {
	raw        [v2Raw]byte
	deviceID   uint64
	expires    int64
	generation uint32
}

// parseV2 parses a token after its "v2." prefix.
func parseV2(s string) (v2Token, bool) {
	var t v2Token
	if len(s) != v2TokenLen-len(v2Prefix) {
		return t, false
	}
	if n, err := base64.RawURLEncoding.Strict().Decode(t.raw[:], []byte(s)); err != nil || n != v2Raw {
		return t, false
	}
	t.deviceID = binary.BigEndian.Uint64(t.raw[0:])
	t.expires = int64(binary.BigEndian.Uint32(t.raw[8:]))
	t.generation = binary.BigEndian.Uint32(t.raw[12:])
	return t, true
}

// verifier checks tokens against the current and the previous secret.
type verifier struct {
	current, previous []byte
	// prkCurrent and prkPrevious are HKDF's extracted keys of the secrets,
	// so that a version 2 check expands only (nil: no previous secret).
	prkCurrent, prkPrevious []byte
}

func newVerifier(current, previous []byte) (verifier, error) {
	v := verifier{current: current, previous: previous}
	var err error
	if v.prkCurrent, err = hkdf.Extract(sha256.New, current, []byte(v2Salt)); err != nil {
		return v, fmt.Errorf("edge: derive token keys: %w", err)
	}
	if previous != nil {
		if v.prkPrevious, err = hkdf.Extract(sha256.New, previous, []byte(v2Salt)); err != nil {
			return v, fmt.Errorf("edge: derive token keys: %w", err)
		}
	}
	return v, nil
}

// verify reports whether token is deviceID's version 1 token under the
// current or the previous secret. Both are always computed and compared in
// constant time, so the answer's timing does not tell which secret matched
// or how much of the token was right.
func (v verifier) verify(token string, deviceID uint64) bool {
	var a, b [2 * sha256.Size]byte
	got := []byte(token)
	ok := hmac.Equal(appendToken(a[:0], v.current, deviceID), got)
	if v.previous != nil {
		ok = hmac.Equal(appendToken(b[:0], v.previous, deviceID), got) || ok
	}
	return ok
}

// verifyV2 reports whether t's MAC is right under the current or the
// previous secret, both always computed and compared in constant time.
func (v verifier) verifyV2(t *v2Token) bool {
	var a, b [sha256.Size]byte
	fields := (*[v2Fields]byte)(t.raw[:v2Fields])
	got := t.raw[v2Fields:]
	ok := v2MAC(&a, v.prkCurrent, fields) && hmac.Equal(a[:], got)
	if v.prkPrevious != nil {
		ok = v2MAC(&b, v.prkPrevious, fields) && hmac.Equal(b[:], got) || ok
	}
	return ok
}

// Reasons of rejected_total for refused tokens, besides bad_token.
const (
	reasonExpiredToken = "expired_token"
	reasonRevokedToken = "revoked_token"
	reasonV1Refused    = "v1_token_refused"
)

// authenticate checks token for deviceID at time now and returns false with
// the rejected_total reason when it is refused. A version 1 token counts as
// generation 0 for revocation.
func (e *Edge) authenticate(token string, deviceID uint64, now time.Time) (bool, string) {
	minGen := e.revocations.minGeneration(deviceID)
	if rest, ok := strings.CutPrefix(token, v2Prefix); ok {
		t, ok := parseV2(rest)
		if !ok || t.deviceID != deviceID {
			return false, reasonBadToken
		}
		// The MAC first: what else is refused says nothing to a forger.
		if !e.verifier.verifyV2(&t) {
			return false, reasonBadToken
		}
		if now.Unix() >= t.expires {
			return false, reasonExpiredToken
		}
		if uint64(t.generation) < minGen {
			return false, reasonRevokedToken
		}
		return true, ""
	}
	if e.opts.RefuseV1Tokens {
		return false, reasonV1Refused
	}
	if !e.verifier.verify(token, deviceID) {
		return false, reasonBadToken
	}
	if minGen > 0 {
		return false, reasonRevokedToken
	}
	e.metrics.v1Tokens.Inc()
	return true, ""
}
