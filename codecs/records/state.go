package records

import (
	"encoding/binary"
	"slices"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
)

// DeviceState is one device's current state: the device-state table's
// value and what the view API answers.
type DeviceState struct {
	DeviceID uint64
	// Messages counts the unique valid messages stored.
	Messages uint64
	// Duplicates counts dropped repeats, within and across packages.
	Duplicates uint64
	// Invalid counts messages sent to the dead-letter topic (decode and
	// validation rejections).
	Invalid uint64
	// PackagesRejected counts whole packages sent to the dead-letter topic
	// (by the edge or the decoder).
	PackagesRejected uint64
	// LastSeenMs is the newest stored message time, Unix ms (0: none).
	LastSeenMs uint64
	// Version is the protocol version of the device's newest package.
	Version uint8
	// Firmware is the firmware of the newest version 2 package (major<<8 |
	// minor; 0 when unknown).
	Firmware uint16
	// Latest holds the newest reading of each type by message time, at most
	// one per type, ordered by type.
	Latest []Reading
	// Applied holds the keys (EnvelopeKey; ReadingsKey in states written
	// before format version 4) of the records most recently applied to the
	// state, oldest first, at most AppliedLimit (format version 2). See
	// MarkApplied.
	Applied []uint64
	// Packages holds the identities of the Readings records applied, over
	// a time horizon (format version 4). See PackageApplied.
	Packages AppliedPackages
	// Inputs holds, for each input partition whose records updated the
	// state, the offset of the newest one applied, most recently updated
	// last, at most InputsLimit (format version 3). See Replayed.
	Inputs []InputOffset
	// ReceivedMs is the edge's receive time of the device's newest
	// package, Unix ms (0: none; format version 3). The silence timer is
	// due ReceivedMs plus the threshold.
	ReceivedMs int64
	// Silent is set while the device is silent: a device_silent alert went
	// out and no package came since (format version 3).
	Silent bool
	// SilentAlerts and BackAlerts count the device_silent and device_back
	// alerts raised for the device (format version 3).
	SilentAlerts, BackAlerts uint64
	// Back is the input record that ended the device's latest silence
	// (raising device_back) and BackSinceMs the receive time that silence
	// started from; Silenced is the loop record of the timer that raised
	// the latest device_silent, and SilentSinceMs and SilentAtMs that
	// alert's SinceMs and TimeMs (format version 4; a zero Source: none).
	// The alert goes out beside the state write, without a transaction: a
	// replay of exactly that record raises the same alert again.
	Back                      InputOffset
	BackSinceMs               int64
	Silenced                  InputOffset
	SilentSinceMs, SilentAtMs int64
}

// InputOffset is the offset of the newest record applied to a state from
// one input partition (Source: InputSource of its topic and partition).
type InputOffset struct {
	Source uint64
	Offset int64
}

// InputsLimit bounds DeviceState.Inputs: a device's records come from one
// partition of each input topic (and of a retry topic, if any).
const InputsLimit = 4

// InputSource identifies an input partition in DeviceState.Inputs: a hash
// of its topic and partition.
func InputSource(topic string, partition int32) uint64 {
	h := fnvBytes(fnvOffset, []byte{'I'})
	h = fnvString(h, topic)
	return fnvUint(h, uint64(int64(partition)))
}

// Replayed reports whether the record at offset of the input partition src
// was applied already: a group replays the records of a partition since its
// last commit, however many, and every state it wrote while handling them
// says how far it got. Unlike Applied, this bound does not depend on how
// many of the device's records a replay covers; Applied remains for the
// copies an upstream stage writes again (other offsets, same identity).
func (s *DeviceState) Replayed(src uint64, offset int64) bool {
	for _, in := range s.Inputs {
		if in.Source == src {
			return offset <= in.Offset
		}
	}
	return false
}

// MarkInput records the record at offset of the input partition src as
// applied, forgetting the least recently updated partition beyond
// InputsLimit.
func (s *DeviceState) MarkInput(src uint64, offset int64) {
	for i, in := range s.Inputs {
		if in.Source == src {
			s.Inputs = append(slices.Delete(s.Inputs, i, i+1), InputOffset{src, max(offset, in.Offset)})
			return
		}
	}
	if n := len(s.Inputs); n >= InputsLimit {
		s.Inputs = slices.Delete(s.Inputs, 0, n-InputsLimit+1)
	}
	s.Inputs = append(s.Inputs, InputOffset{src, offset})
}

// AppliedLimit bounds DeviceState.Applied, the dead letters' keys: the
// framework writes a dead letter once per source record, so these only
// catch what it cannot (see EnvelopeKey). It is also the number of
// package identities Packages keeps whatever their age.
const AppliedLimit = 64

// WasApplied reports whether the record of key is among the recently
// applied ones.
func (s *DeviceState) WasApplied(key uint64) bool { return slices.Contains(s.Applied, key) }

// MarkApplied remembers key as applied, forgetting the oldest key beyond
// AppliedLimit.
func (s *DeviceState) MarkApplied(key uint64) {
	if n := len(s.Applied); n >= AppliedLimit {
		s.Applied = slices.Delete(s.Applied, 0, n-AppliedLimit+1)
	}
	s.Applied = append(s.Applied, key)
}

// PackageApplied reports whether the Readings part (raw, part) of a package
// (see Readings.HasIdentity) was applied to the state: it is among
// Packages, or among the keys of Applied of a state written before format
// version 4.
func (s *DeviceState) PackageApplied(raw, part int64) bool {
	return s.Packages.Contains(raw, part) || (len(s.Applied) > 0 && s.WasApplied(ReadingsKey(raw, part)))
}

// MarkPackage remembers the Readings part (raw, part) of a package received
// at receivedMs as applied, for as long as AppliedPackages.Add keeps it
// with horizon.
func (s *DeviceState) MarkPackage(raw, part, receivedMs int64, horizon time.Duration) {
	s.Packages.Add(raw, part, receivedMs, horizon)
}

// FNV-1a, 64 bits: a stable hash (the keys are stored).
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvBytes(h uint64, b []byte) uint64 {
	for _, c := range b {
		h = (h ^ uint64(c)) * fnvPrime
	}
	return h
}

func fnvString(h uint64, s string) uint64 {
	h = fnvUint(h, uint64(len(s)))
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime
	}
	return h
}

func fnvUint(h, v uint64) uint64 {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return fnvBytes(h, b[:])
}

// ReadingsKey is the key of a Readings record with its package's identity
// (see Readings.HasIdentity): a hash of its raw offset and part.
func ReadingsKey(rawOffset, part int64) uint64 {
	h := fnvBytes(fnvOffset, []byte{'R'})
	h = fnvUint(h, uint64(rawOffset))
	return fnvUint(h, uint64(part))
}

// EnvelopeKey is a dead-letter envelope's identity, as a hash: its Stage,
// Topic, Partition, Offset, Reason and Error; and its Timestamp when it has
// no record coordinates (Partition or Offset -1, as the edge writes), since
// those are distinct attempts. A stage that replays a record writes its
// envelopes again with equal keys (the decoder's message-level envelopes
// differ by their Error, which names the message), while Attempts and the
// failure times may differ. Tools that count dead letters count distinct
// keys.
func EnvelopeKey(e *Envelope) uint64 {
	h := fnvBytes(fnvOffset, []byte{'E'})
	h = fnvString(h, e.Stage)
	h = fnvString(h, e.Topic)
	h = fnvUint(h, uint64(int64(e.Partition)))
	h = fnvUint(h, uint64(e.Offset))
	h = fnvString(h, e.Reason)
	h = fnvString(h, e.Error)
	if e.Partition == -1 || e.Offset == -1 {
		h = fnvUint(h, uint64(e.Timestamp.Unix()))
		h = fnvUint(h, uint64(e.Timestamp.Nanosecond()))
	}
	return h
}

// LatestOf returns the newest reading of type t, if any.
func (s *DeviceState) LatestOf(t protocol.MsgType) (Reading, bool) {
	for _, r := range s.Latest {
		if r.Type == t {
			return r, true
		}
	}
	return Reading{}, false
}

// Observe makes r the latest reading of its type unless a newer one is
// already there, so that a late message never moves state back in time. It
// reports whether r was taken.
func (s *DeviceState) Observe(r Reading) bool {
	for i := range s.Latest {
		if s.Latest[i].Type == r.Type {
			if r.TimeMs < s.Latest[i].TimeMs {
				return false
			}
			s.Latest[i] = r
			return true
		}
	}
	i := 0
	for i < len(s.Latest) && s.Latest[i].Type < r.Type {
		i++
	}
	s.Latest = append(s.Latest, Reading{})
	copy(s.Latest[i+1:], s.Latest[i:])
	s.Latest[i] = r
	return true
}

// deviceStateVersion is the newest DeviceState format.
//
// Version 1: version byte, DeviceID, Messages, Duplicates, Invalid,
// PackagesRejected, LastSeenMs (uvarints), Version (1 byte), Firmware
// (uvarint), the count of latest readings (uvarint) and each as TimeMs
// (uvarint) and the reading body of the Readings format.
//
// Version 2 appends the Applied keys: count (uvarint) and each as 8 bytes
// big-endian (hashes do not shrink as varints). Version 1 is still read
// (Applied then is empty).
//
// Version 3 appends the Inputs: count (uvarint) and each as Source (8
// bytes big-endian) and Offset (varint); then ReceivedMs (varint), Silent
// (1 byte, 0 or 1), SilentAlerts and BackAlerts (uvarints). Versions 1
// and 2 are still read (those then are empty or zero).
//
// Version 4 appends the Packages (see appendPackages), then Back (Source 8
// bytes big-endian, Offset varint), BackSinceMs, Silenced (the same),
// SilentSinceMs and SilentAtMs (varints). Versions 1 to 3 are still read.
const deviceStateVersion = 4

// DeviceStateCodec encodes and decodes DeviceState values. It implements
// codecs.Codec[DeviceState].
type DeviceStateCodec struct{}

// Encode returns the record bytes of s.
func (DeviceStateCodec) Encode(s DeviceState) ([]byte, error) {
	b := make([]byte, 0, 112+32*len(s.Latest)+8*len(s.Applied)+16*len(s.Inputs)+len(s.Packages.enc))
	b = append(b, deviceStateVersion)
	for _, v := range []uint64{s.DeviceID, s.Messages, s.Duplicates, s.Invalid, s.PackagesRejected, s.LastSeenMs} {
		b = binary.AppendUvarint(b, v)
	}
	b = append(b, s.Version)
	b = binary.AppendUvarint(b, uint64(s.Firmware))
	b = binary.AppendUvarint(b, uint64(len(s.Latest)))
	for i := range s.Latest {
		b = binary.AppendUvarint(b, s.Latest[i].TimeMs)
		b = appendReadingBody(b, &s.Latest[i])
	}
	b = appendKeys(b, s.Applied)
	b = binary.AppendUvarint(b, uint64(len(s.Inputs)))
	for _, in := range s.Inputs {
		b = appendInput(b, in)
	}
	b = binary.AppendVarint(b, s.ReceivedMs)
	silent := byte(0)
	if s.Silent {
		silent = 1
	}
	b = append(b, silent)
	b = binary.AppendUvarint(b, s.SilentAlerts)
	b = binary.AppendUvarint(b, s.BackAlerts)
	b = appendPackages(b, &s.Packages)
	b = appendInput(b, s.Back)
	b = binary.AppendVarint(b, s.BackSinceMs)
	b = appendInput(b, s.Silenced)
	b = binary.AppendVarint(b, s.SilentSinceMs)
	return binary.AppendVarint(b, s.SilentAtMs), nil
}

// Decode parses record bytes written by any version of Encode.
func (DeviceStateCodec) Decode(b []byte) (DeviceState, error) {
	var s DeviceState
	r := reader{b: b}
	v := r.version("device state", deviceStateVersion)
	s.DeviceID = r.uvarint("device id")
	s.Messages = r.uvarint("messages")
	s.Duplicates = r.uvarint("duplicates")
	s.Invalid = r.uvarint("invalid")
	s.PackagesRejected = r.uvarint("packages rejected")
	s.LastSeenMs = r.uvarint("last seen")
	s.Version = r.byte1("version")
	fw := r.uvarint("firmware")
	if fw > 0xffff {
		r.fail("firmware")
	}
	s.Firmware = uint16(fw)
	if n := r.length("latest count", minReadingLen); n > 0 {
		s.Latest = make([]Reading, n)
		for i := range s.Latest {
			s.Latest[i].DeviceID = s.DeviceID
			s.Latest[i].TimeMs = r.uvarint("latest time")
			r.readingBody(&s.Latest[i])
		}
	}
	if v >= 2 {
		s.Applied = r.keys("applied")
	}
	if v >= 3 {
		if n := r.length("input count", 9); n > 0 {
			s.Inputs = make([]InputOffset, n)
			for i := range s.Inputs {
				s.Inputs[i] = r.input()
			}
		}
		s.ReceivedMs = r.varint("received")
		switch r.byte1("silent") {
		case 0:
		case 1:
			s.Silent = true
		default:
			r.fail("silent")
		}
		s.SilentAlerts = r.uvarint("silent alerts")
		s.BackAlerts = r.uvarint("back alerts")
	}
	if v >= 4 {
		s.Packages = r.packages()
		s.Back = r.input()
		s.BackSinceMs = r.varint("back since")
		s.Silenced = r.input()
		s.SilentSinceMs = r.varint("silent since")
		s.SilentAtMs = r.varint("silent at")
	}
	if err := r.finish("device state"); err != nil {
		return DeviceState{}, err
	}
	return s, nil
}

// appendInput appends an input record's Source (8 bytes big-endian) and
// Offset (varint).
func appendInput(b []byte, in InputOffset) []byte {
	b = binary.BigEndian.AppendUint64(b, in.Source)
	return binary.AppendVarint(b, in.Offset)
}

// input reads what appendInput wrote (constant names: the state is
// decoded for every record, and a built name allocates).
func (r *reader) input() InputOffset {
	return InputOffset{Source: r.fixed64("input source"), Offset: r.varint("input offset")}
}

// appendKeys appends 64-bit keys: their count (uvarint) and each as 8
// bytes big-endian (hashes do not shrink as varints).
func appendKeys(b []byte, keys []uint64) []byte {
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = binary.BigEndian.AppendUint64(b, k)
	}
	return b
}

// keys reads what appendKeys wrote (nil for none).
func (r *reader) keys(what string) []uint64 {
	n := r.length(what+" count", 8)
	if n == 0 {
		return nil
	}
	out := make([]uint64, n)
	name := what + " key" // once: the state is decoded for every record, a window aggregate holds thousands
	for i := range out {
		p := r.raw(name, 8)
		if p == nil {
			return nil
		}
		out[i] = binary.BigEndian.Uint64(p)
	}
	return out
}
