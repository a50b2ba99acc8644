package simulator

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/edge"
)

// IntRange is an inclusive range of integers.
type IntRange struct {
	Min, Max int
}

// defaultMessagesPerPackage is used when FleetConfig.MessagesPerPackage is
// zero; it is never written.
var defaultMessagesPerPackage = IntRange{Min: 10, Max: 40}

// DefaultMessagesPerPackage returns the default number of messages per
// package, 10 to 40.
func DefaultMessagesPerPackage() IntRange { return defaultMessagesPerPackage }

// FleetConfig configures a Fleet.
type FleetConfig struct {
	// Seed makes everything deterministic: two Fleets of equal config and
	// Now sequences generate the same packages.
	Seed int64
	// Devices is the fleet size (default 100).
	Devices int
	// Secret is the edge's device secret, for the bearer tokens.
	Secret []byte
	// TokenVersion is the version of the devices' tokens: 1 (Token, the
	// default) or 2 (edge.TokenV2, generation 0, valid for TokenTTL from
	// the package's time).
	TokenVersion int
	// TokenTTL is how long a version 2 token is valid (default 24 h).
	TokenTTL time.Duration
	// Faults sets the fault rates; the zero FaultMix injects none.
	Faults FaultMix
	// MessagesPerPackage bounds the regular messages of a package (default
	// 10 to 40, at most 4000).
	MessagesPerPackage IntRange
	// Now is the clock (default time.Now). Message times follow it; a
	// frozen clock is fine (device clocks then step 1 ms a message).
	Now func() time.Time
	// MessageClock, when set, is the clock the device clocks follow
	// instead of Now: a clock behind Now and running faster (the demo's)
	// gives hours of message time in a short run. Validation (messages
	// ahead of their receipt) and future messages still follow Now, the
	// edge's clock.
	MessageClock func() time.Time
	// Pause keeps some devices from sending for a while.
	Pause Pause
}

// Pause keeps the first Devices devices of a fleet (in Devices order)
// from sending during For, From after the fleet was made, by Now: a
// silence, then a return. When the pause ends the paused devices send the
// next ReturnPackages packages, in turn, so that the return does not hang
// on the draw of a large fleet or a short run's last seconds.
type Pause struct {
	Devices   int
	From, For time.Duration
}

// Fleet generates the packages of a fleet of devices, deterministically
// from its seed and clock. It is not safe for concurrent use.
type Fleet struct {
	cfg     FleetConfig
	rng     *rand.Rand
	devices []*device
	seq     int
	// Cycle positions for the faults that have several kinds.
	malformedNext, badRecordNext int
	// resends are lost-ACK resends waiting for their turn.
	resends []pendingResend
	// injected counts faults by kind.
	injected map[Fault]int
	// deviceNow is MessageClock's time (Now's without it) when the current
	// package is built, in ms: what device clocks follow.
	deviceNow uint64
	// pauseFrom and pauseTo are when Pause keeps its devices silent;
	// returned counts the packages the paused devices sent after it.
	pauseFrom, pauseTo time.Time
	returned           int
}

// ReturnPackages is how many packages the paused devices send first when
// their pause ends (more than one, so that a package with an injected
// fault does not leave the return to chance).
const ReturnPackages = 4

type pendingResend struct {
	due int // the Fleet sequence number at which it is sent
	pkg *Package
}

// ErrConfig is wrapped by the errors of NewFleet and New for a bad
// configuration.
var ErrConfig = errors.New("simulator: bad configuration")

// NewFleet returns a Fleet of cfg.Devices devices.
func NewFleet(cfg FleetConfig) (*Fleet, error) {
	if cfg.Devices == 0 {
		cfg.Devices = 100
	}
	if cfg.Devices < 0 {
		return nil, fmt.Errorf("%w: %d devices", ErrConfig, cfg.Devices)
	}
	if cfg.TokenVersion == 0 {
		cfg.TokenVersion = 1
	}
	if cfg.TokenVersion != 1 && cfg.TokenVersion != 2 {
		return nil, fmt.Errorf("%w: token version %d (1 or 2)", ErrConfig, cfg.TokenVersion)
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = 24 * time.Hour
	}
	if cfg.MessagesPerPackage == (IntRange{}) {
		cfg.MessagesPerPackage = defaultMessagesPerPackage
	}
	if r := cfg.MessagesPerPackage; r.Min < 1 || r.Max < r.Min || r.Max > 4000 {
		return nil, fmt.Errorf("%w: messages per package %d..%d (want 1 <= min <= max <= 4000)", ErrConfig, r.Min, r.Max)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MessageClock == nil {
		cfg.MessageClock = cfg.Now
	}
	if pz := cfg.Pause; pz.Devices < 0 || pz.Devices >= max(cfg.Devices, 1) || pz.From < 0 || pz.For < 0 {
		return nil, fmt.Errorf("%w: pause of %d devices of %d (some must keep sending)", ErrConfig, pz.Devices, cfg.Devices)
	}
	f := &Fleet{
		cfg:      cfg,
		rng:      rand.New(rand.NewPCG(uint64(cfg.Seed), 0x77617465727368)),
		injected: make(map[Fault]int),
	}
	if cfg.Pause.Devices > 0 {
		start := cfg.Now()
		f.pauseFrom, f.pauseTo = start.Add(cfg.Pause.From), start.Add(cfg.Pause.From+cfg.Pause.For)
	}
	now := nowMs(cfg.MessageClock)
	seen := map[uint64]bool{0: true}
	for i := range cfg.Devices {
		var id uint64
		for seen[id] {
			switch {
			case i == 0:
				id = f.rng.Uint64() | 1<<63 // always one id above 2^63
			case i%10 == 1:
				id = 1 + f.rng.Uint64N(999_999) // some short ids
			default:
				id = f.rng.Uint64()
			}
		}
		seen[id] = true
		info := DeviceInfo{ID: id, Version: 1}
		if f.rng.IntN(5) >= 2 {
			info.Version = 2
			info.Firmware = uint16(2+f.rng.IntN(2))<<8 | uint16(f.rng.IntN(16))
		}
		f.devices = append(f.devices, newDevice(info, f.rng, now))
	}
	return f, nil
}

// Devices returns the fleet's devices.
func (f *Fleet) Devices() []DeviceInfo {
	out := make([]DeviceInfo, len(f.devices))
	for i, d := range f.devices {
		out[i] = d.DeviceInfo
	}
	return out
}

// Injected returns how many faults of each kind the Fleet has generated so
// far (a lost-ACK resend counts when it is generated).
func (f *Fleet) Injected() map[Fault]int {
	out := make(map[Fault]int, len(f.injected))
	for k, v := range f.injected {
		out[k] = v
	}
	return out
}

// Token returns the bearer token of deviceID: the lowercase hex
// HMAC-SHA256 of its decimal form, keyed by secret.
func Token(secret []byte, deviceID uint64) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(strconv.FormatUint(deviceID, 10)))
	return hex.EncodeToString(mac.Sum(nil))
}

// token returns deviceID's token under secret in the fleet's token version.
func (f *Fleet) token(secret []byte, deviceID uint64) string {
	if f.cfg.TokenVersion == 2 {
		if tok, err := edge.TokenV2(secret, deviceID, f.cfg.Now().Add(f.cfg.TokenTTL), 0); err == nil {
			return tok
		}
		// An expiry a token cannot hold (a clock before 1970 or after
		// 2106): fall back to version 1 rather than send nothing.
	}
	return Token(secret, deviceID)
}

func nowMs(now func() time.Time) uint64 { return uint64(now().UnixMilli()) }

// Next returns the fleet's next package. An error means a bug of the
// simulator (a package it could not encode).
func (f *Fleet) Next() (*Package, error) {
	f.seq++
	if len(f.resends) > 0 && f.resends[0].due <= f.seq {
		r := f.resends[0]
		f.resends = f.resends[1:]
		p := *r.pkg
		p.Seq = f.seq
		p.Faults = []Fault{FaultLostACK}
		p.ResendOf = r.pkg.Seq
		f.injected[FaultLostACK]++
		return &p, nil
	}
	wall := f.cfg.Now()
	i := f.rng.IntN(len(f.devices))
	for i < f.cfg.Pause.Devices && !wall.Before(f.pauseFrom) && wall.Before(f.pauseTo) {
		i = f.rng.IntN(len(f.devices))
	}
	if n := f.cfg.Pause.Devices; n > 0 && !wall.Before(f.pauseTo) && f.returned < ReturnPackages*n {
		i = f.returned % n
		f.returned++
	}
	d := f.devices[i]
	now := uint64(wall.UnixMilli())
	f.deviceNow = nowMs(f.cfg.MessageClock)
	mix := &f.cfg.Faults
	var (
		p   *Package
		err error
	)
	switch {
	case f.chance(mix.Malformed):
		kind := malformedFaults[f.malformedNext%len(malformedFaults)]
		f.malformedNext++
		p, err = f.malformed(d, kind, now)
	case f.chance(mix.Stale):
		p, err = f.stale(d, now)
	default:
		p, err = f.regular(d, now, true)
	}
	if err != nil {
		return nil, fmt.Errorf("simulator: package %d of device %d: %w", f.seq, d.ID, err)
	}
	p.Seq = f.seq
	// The edge checks the header (400) before the token (401).
	if p.Expect.Code != 400 && f.chance(mix.WrongToken) {
		p.Token = f.token(f.cfg.Secret, p.Expect.Device^0x5a5a) // another device's
		if f.rng.IntN(2) == 0 {
			p.Token = f.token(append([]byte("not-"), f.cfg.Secret...), p.Expect.Device)
		}
		p.Faults = append(p.Faults, FaultWrongToken)
		p.Expect.Code = 401
	}
	if p.Expect.Code == 202 && f.chance(mix.LostACK) {
		f.resends = append(f.resends, pendingResend{due: f.seq + 1 + f.rng.IntN(4), pkg: p})
	}
	if p.Expect.Code == 202 && p.Expect.Reject == protocol.ReasonNone {
		d.remember(p.Expect.BaseTimeMs, p.sentMessages)
	}
	p.sentMessages = nil
	for _, flt := range p.Faults {
		f.injected[flt]++
	}
	return p, nil
}

func (f *Fleet) chance(p float64) bool { return p > 0 && f.rng.Float64() < p }

// header returns the next header of device d.
func (f *Fleet) header(d *device, base uint64, count int) protocol.Header {
	d.seq++
	h := protocol.Header{
		Version:      d.Version,
		DeviceID:     d.ID,
		PackageSeq:   d.seq,
		BaseTimeMs:   base,
		MessageCount: uint16(count),
		Firmware:     d.Firmware,
	}
	if f.rng.IntN(2) == 0 {
		h.Flags = protocol.FlagSnappy
	}
	return h
}
