package views

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrMalformedDeviceID is wrapped by the errors of ParseDeviceID.
var ErrMalformedDeviceID = errors.New("views: malformed device id")

// maxDeviceIDLen is the length of "18446744073709551615" (2^64-1).
const maxDeviceIDLen = 20

// ParseDeviceID parses a device id in canonical decimal: one or more ASCII
// digits, without sign, spaces, or leading zeros (except "0" itself), at
// most 2^64-1. Its errors wrap ErrMalformedDeviceID.
func ParseDeviceID(s string) (uint64, error) {
	if s == "" || len(s) > maxDeviceIDLen {
		return 0, fmt.Errorf("%w: %q", ErrMalformedDeviceID, s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w: %q", ErrMalformedDeviceID, s)
		}
	}
	if s[0] == '0' && len(s) > 1 {
		return 0, fmt.Errorf("%w: leading zero in %q", ErrMalformedDeviceID, s)
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrMalformedDeviceID, err)
	}
	return id, nil
}
