package views

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Scope is the set of devices a key sees: every device when All is set,
// otherwise the devices of Fleets and the devices listed in Devices.
type Scope struct {
	// All: every device, present and future.
	All bool
	// Fleets are fleet names, as in the fleet list.
	Fleets []string
	// Devices are device ids.
	Devices []uint64
}

// scope is a Scope prepared for lookups.
type scope struct {
	all     bool
	fleets  map[string]struct{}
	devices map[uint64]struct{}
}

// Keys are the API keys the server accepts, each with its scope, and the
// fleet of each device. The zero value holds no key. A Keys is not changed
// after it is built and is safe for concurrent use.
//
// A key may be given as itself or as its SHA-256, "sha256:" and 64
// hexadecimal digits (HashPrefix): the server only ever needs the hash, so
// a key file of hashes can be read by more people than the keys.
type Keys struct {
	// byHash maps the SHA-256 of each key to its scope.
	byHash map[[sha256.Size]byte]*scope
	// fleetOf maps device ids to their fleet.
	fleetOf map[uint64]string
	// short says where each key shorter than MinKeyLength was given
	// (hashed keys have no known length).
	short []string
}

// MinKeyLength is the length under which a key is refused (by New and
// SetKeys unless Options.AllowShortKeys, see CheckLength): 24
// characters of base64 are 144 bits, beyond any guessing.
const MinKeyLength = 24

// HashPrefix starts a key given as its SHA-256 in hexadecimal; such a
// key is made with `printf %s "$KEY" | sha256sum`.
const HashPrefix = "sha256:"

// CheckLength returns an error naming where the first key shorter than
// MinKeyLength was given, or nil. Keys given as hashes are not checked:
// whoever hashed them vouches for their length.
func (k Keys) CheckLength() error {
	if len(k.short) == 0 {
		return nil
	}
	return fmt.Errorf("views: %s is shorter than %d characters; make keys with, for instance, `openssl rand -base64 24`", k.short[0], MinKeyLength)
}

// NewKeys returns Keys holding scopes by key, and fleetOf, the fleet of
// each device. Keys must be non-empty token68 strings (letters, digits and
// "-._~+/", then optional "="s), fleet names non-empty strings of letters,
// digits and "-._", and every fleet of a scope must have a device in
// fleetOf.
func NewKeys(scopes map[string]Scope, fleetOf map[uint64]string) (Keys, error) {
	k := Keys{byHash: make(map[[sha256.Size]byte]*scope, len(scopes)), fleetOf: make(map[uint64]string, len(fleetOf))}
	fleets := make(map[string]bool)
	for id, f := range fleetOf {
		if err := checkFleetName(f); err != nil {
			return Keys{}, fmt.Errorf("views: device %d: %w", id, err)
		}
		k.fleetOf[id] = f
		fleets[f] = true
	}
	// Sorted, so that errors do not depend on map order.
	names := make([]string, 0, len(scopes))
	for key := range scopes {
		names = append(names, key)
	}
	sort.Strings(names)
	for _, key := range names {
		sc, err := newScope(scopes[key], fleets)
		if err != nil {
			return Keys{}, fmt.Errorf("views: key %s: %w", redact(key), err)
		}
		short, err := k.add(key, sc)
		if err != nil {
			return Keys{}, fmt.Errorf("views: key %s: %w", redact(key), err)
		}
		if short {
			k.short = append(k.short, "a key of "+strconv.Itoa(len(key))+" characters")
		}
	}
	return k, nil
}

// KeyEnv is the environment variable that holds one full-scope key; see
// FullScopeKey.
const KeyEnv = "WATERSHED_VIEW_KEY"

// FullScopeKey returns Keys holding one key (or its hash, HashPrefix) that
// sees every device, such as the one given in WATERSHED_VIEW_KEY.
func FullScopeKey(key string) (Keys, error) {
	k, err := NewKeys(map[string]Scope{key: {All: true}}, nil)
	if len(k.short) > 0 {
		k.short = []string{"the full-scope key (" + strconv.Itoa(len(key)) + " characters)"}
	}
	return k, err
}

// Len returns the number of keys.
func (k Keys) Len() int { return len(k.byHash) }

// Merge returns Keys holding the keys of k and of o, and the device fleets
// of both. A key in both, or a device in two different fleets, is an error.
func (k Keys) Merge(o Keys) (Keys, error) {
	m := Keys{
		byHash:  make(map[[sha256.Size]byte]*scope, len(k.byHash)+len(o.byHash)),
		fleetOf: make(map[uint64]string, len(k.fleetOf)+len(o.fleetOf)),
		short:   append(append([]string(nil), k.short...), o.short...),
	}
	for _, src := range []Keys{k, o} {
		for h, sc := range src.byHash {
			if _, dup := m.byHash[h]; dup {
				return Keys{}, errors.New("views: merge keys: a key is in both sets")
			}
			m.byHash[h] = sc
		}
		for id, f := range src.fleetOf {
			if g, dup := m.fleetOf[id]; dup && g != f {
				return Keys{}, fmt.Errorf("views: merge keys: device %d is in fleets %q and %q", id, g, f)
			}
			m.fleetOf[id] = f
		}
	}
	return m, nil
}

// add adds key (or a hash, HashPrefix) with scope sc, and reports
// whether it is a key shorter than MinKeyLength.
func (k Keys) add(key string, sc *scope) (short bool, err error) {
	h, hashed, err := keyHash(key)
	if err != nil {
		return false, err
	}
	if _, dup := k.byHash[h]; dup {
		return false, errors.New("given twice")
	}
	k.byHash[h] = sc
	return !hashed && len(key) < MinKeyLength, nil
}

// keyHash returns the SHA-256 of a key, or the hash a HashPrefix entry
// gives, and whether it was given as a hash.
func keyHash(key string) (h [sha256.Size]byte, hashed bool, err error) {
	if hx, ok := strings.CutPrefix(key, HashPrefix); ok {
		if len(hx) != hex.EncodedLen(sha256.Size) {
			return h, true, fmt.Errorf("a %s key takes %d hexadecimal digits, not %d", HashPrefix, hex.EncodedLen(sha256.Size), len(hx))
		}
		if _, err := hex.Decode(h[:], []byte(hx)); err != nil {
			return h, true, fmt.Errorf("a %s key takes hexadecimal digits only", HashPrefix)
		}
		return h, true, nil
	}
	if err := checkKey(key); err != nil {
		return h, false, err
	}
	return sha256.Sum256([]byte(key)), false, nil
}

// lookup returns the scope of a presented key, or nil. The key is hashed
// and the hash looked up, so the time taken does not depend on how much of
// a stored key the presented one matches.
func (k Keys) lookup(presented string) *scope {
	return k.byHash[sha256.Sum256([]byte(presented))]
}

// sees reports whether a key of scope sc sees device id.
func (k Keys) sees(sc *scope, id uint64) bool {
	if sc.all {
		return true
	}
	if _, ok := sc.devices[id]; ok {
		return true
	}
	if f, ok := k.fleetOf[id]; ok {
		_, ok = sc.fleets[f]
		return ok
	}
	return false
}

// newScope checks s against the known fleets and prepares it.
func newScope(s Scope, fleets map[string]bool) (*scope, error) {
	if s.All {
		if len(s.Fleets) > 0 || len(s.Devices) > 0 {
			return nil, errors.New("a scope of every device lists fleets or devices too")
		}
		return &scope{all: true}, nil
	}
	if len(s.Fleets) == 0 && len(s.Devices) == 0 {
		return nil, errors.New("empty scope")
	}
	sc := &scope{fleets: make(map[string]struct{}, len(s.Fleets)), devices: make(map[uint64]struct{}, len(s.Devices))}
	for _, f := range s.Fleets {
		if err := checkFleetName(f); err != nil {
			return nil, err
		}
		if !fleets[f] {
			return nil, fmt.Errorf("fleet %q has no devices in the fleet list", f)
		}
		sc.fleets[f] = struct{}{}
	}
	for _, id := range s.Devices {
		sc.devices[id] = struct{}{}
	}
	return sc, nil
}

// checkKey checks that key is a non-empty token68 (RFC 7235), the syntax
// of a bearer token.
func checkKey(key string) error {
	if key == "" {
		return errors.New("empty key")
	}
	body := strings.TrimRight(key, "=")
	if body == "" {
		return errors.New("key of only '='")
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !isAlnum(c) && !strings.ContainsRune("-._~+/", rune(c)) {
			return fmt.Errorf("key has a character not allowed in a bearer token at byte %d", i)
		}
	}
	return nil
}

// checkFleetName checks a fleet name: letters, digits, "-", "." and "_".
func checkFleetName(f string) error {
	if f == "" {
		return errors.New("empty fleet name")
	}
	for i := 0; i < len(f); i++ {
		if c := f[i]; !isAlnum(c) && c != '-' && c != '.' && c != '_' {
			return fmt.Errorf("fleet name %q: only letters, digits, '-', '.' and '_' are allowed", f)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// redact returns what error messages say of a key: nothing of its
// content.
func redact(key string) string {
	return fmt.Sprintf("(%d characters)", len(key))
}

// LoadKeys reads a key file and, when fleetPath is not empty, a fleet
// file. Both are UTF-8 text; a '#' starts a comment to the end of the
// line, and blank lines are skipped.
//
// A key file line is a key and its scope, separated by spaces:
//
//	# key                                scope
//	q3Jx0v5Yp8bN2kT7wR4mZ1sD6fH9gL0c     *
//	sha256:0b8f...(64 hex digits)        fleet:north,fleet:south
//	Vn5Qe8Tz1Ku4Wb7Xc0Ya3Md6Rf9Gh2Js     fleet:north 1001,1002
//
// The key is the key itself or, better, its SHA-256 (HashPrefix and 64
// hexadecimal digits), so that the file does not hold the keys.
// The scope is "*" (every device) alone, or items separated by commas or
// spaces: "fleet:NAME" for every device of fleet NAME, or a device id in
// decimal. A key given twice is an error.
//
// A fleet file line is a device id in decimal and its fleet's name:
//
//	1001 north
//	1002 south
//
// A device in the fleet file twice is an error. Errors name the file and
// line.
func LoadKeys(path, fleetPath string) (Keys, error) {
	kf, err := os.Open(path)
	if err != nil {
		return Keys{}, fmt.Errorf("views: key file: %w", err)
	}
	defer kf.Close()
	var fleets io.Reader
	fleetName := ""
	if fleetPath != "" {
		ff, err := os.Open(fleetPath)
		if err != nil {
			return Keys{}, fmt.Errorf("views: fleet file: %w", err)
		}
		defer ff.Close()
		fleets, fleetName = ff, fleetPath
	}
	return ParseKeys(path, kf, fleetName, fleets)
}

// ParseKeys parses a key file from keys and a fleet file from fleets
// (which may be nil for none), in the formats of LoadKeys. The names are
// used in error messages. A key file without keys is an error.
func ParseKeys(keysName string, keys io.Reader, fleetsName string, fleets io.Reader) (Keys, error) {
	fleetOf := make(map[uint64]string)
	if fleets != nil {
		fleetLine := make(map[uint64]int)
		err := eachLine(fleetsName, fleets, func(n int, fields []string) error {
			if len(fields) != 2 {
				return fmt.Errorf("want DEVICE_ID FLEET, got %d fields", len(fields))
			}
			id, err := ParseDeviceID(fields[0])
			if err != nil {
				return err
			}
			if err := checkFleetName(fields[1]); err != nil {
				return err
			}
			if prev, dup := fleetLine[id]; dup {
				return fmt.Errorf("device %d already listed on line %d", id, prev)
			}
			fleetLine[id] = n
			fleetOf[id] = fields[1]
			return nil
		})
		if err != nil {
			return Keys{}, err
		}
	}
	known := make(map[string]bool)
	for _, f := range fleetOf {
		known[f] = true
	}
	k := Keys{byHash: make(map[[sha256.Size]byte]*scope), fleetOf: fleetOf}
	keyLine := make(map[[sha256.Size]byte]int)
	err := eachLine(keysName, keys, func(n int, fields []string) error {
		if len(fields) < 2 {
			return errors.New("want KEY SCOPE")
		}
		s, err := parseScope(fields[1:])
		if err != nil {
			return err
		}
		sc, err := newScope(s, known)
		if err != nil {
			return err
		}
		h, _, err := keyHash(fields[0])
		if err != nil {
			return err
		}
		if prev, dup := keyLine[h]; dup {
			return fmt.Errorf("key already given on line %d", prev)
		}
		short, err := k.add(fields[0], sc)
		if err != nil {
			return err
		}
		if short {
			k.short = append(k.short, fmt.Sprintf("%s line %d: the key (%d characters)", keysName, n, len(fields[0])))
		}
		keyLine[h] = n
		return nil
	})
	if err != nil {
		return Keys{}, err
	}
	if k.Len() == 0 {
		return Keys{}, fmt.Errorf("views: %s: no keys", keysName)
	}
	return k, nil
}

// parseScope parses the scope fields of a key file line.
func parseScope(fields []string) (Scope, error) {
	var s Scope
	var items []string
	for _, f := range fields {
		items = append(items, strings.Split(f, ",")...)
	}
	for _, it := range items {
		switch {
		case it == "":
			return Scope{}, errors.New("empty scope item (stray comma?)")
		case it == "*":
			if len(items) != 1 {
				return Scope{}, errors.New(`"*" must be the whole scope`)
			}
			s.All = true
		case strings.HasPrefix(it, "fleet:"):
			s.Fleets = append(s.Fleets, strings.TrimPrefix(it, "fleet:"))
		default:
			id, err := ParseDeviceID(it)
			if err != nil {
				// Not the item itself: a key written in the wrong column would be
				// printed.
				return Scope{}, fmt.Errorf("a scope item of %d characters is not *, fleet:NAME or a device id", len(it))
			}
			s.Devices = append(s.Devices, id)
		}
	}
	return s, nil
}

// eachLine calls fn with the 1-based number and the space-separated fields
// of each line of r that has any outside comments, and wraps its errors
// with name and line.
func eachLine(name string, r io.Reader, fn func(n int, fields []string) error) error {
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if err := fn(n, fields); err != nil {
			return fmt.Errorf("views: %s line %d: %w", name, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("views: %s line %d: %w", name, n+1, err)
	}
	return nil
}
