package edge

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// Token returns the bearer token of device deviceID under secret: the
// lowercase hex HMAC-SHA256 of the device id written in decimal ASCII.
// Devices (and the simulator) send it as "Authorization: Bearer TOKEN".
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

// verifier checks tokens against the current and the previous secret.
type verifier struct {
	current, previous []byte
}

// verify reports whether token is deviceID's token under the current or
// the previous secret. Both are always computed and compared in constant
// time, so the answer's timing does not tell which secret matched or how
// much of the token was right.
func (v verifier) verify(token string, deviceID uint64) bool {
	var a, b [2 * sha256.Size]byte
	got := []byte(token)
	ok := hmac.Equal(appendToken(a[:0], v.current, deviceID), got)
	if v.previous != nil {
		ok = hmac.Equal(appendToken(b[:0], v.previous, deviceID), got) || ok
	}
	return ok
}
