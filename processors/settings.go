package processors

import (
	"time"

	"github.com/watershed-io/watershed/settings"
)

// SettingsSection names the pipeline's section of a config file.
const SettingsSection = "pipeline"

// pipelineSettings are the pipeline's declared settings: the shape every
// process of an installation must agree on, and the stages' limits.
type pipelineSettings struct {
	prefix        settings.Var[string]
	partitions    settings.Var[int]
	fuse          settings.Var[Fusion]
	dedupeWindow  settings.Var[time.Duration]
	dedupeBucket  settings.Var[time.Duration]
	futureSkew    settings.Var[time.Duration]
	coolantAlertC settings.Var[float64]
	alertSeverity settings.Var[float64]
	silence       settings.Var[time.Duration]
	replayHorizon settings.Var[time.Duration]
}

func declaredSettings() pipelineSettings {
	return pipelineSettings{
		prefix:     settings.String("prefix", "", "prefix of every topic and group name"),
		partitions: settings.Int("partitions", 8, "partitions of every pipeline topic"),
		fuse: settings.Text[Fusion]("fuse", FuseNone,
			"stages to fuse into the group after them: none, all, or a comma-separated list of decode (into dedupe) and alerts (into device-state); every process of an installation must agree, and run --groups then names the fused groups"),
		dedupeWindow:  settings.Duration("dedupe-window", 24*time.Hour, "how long message identities are remembered for cross-package dedupe, in message time"),
		dedupeBucket:  settings.Duration("dedupe-bucket", 10*time.Minute, "span of message time whose identities share one dedupe table entry"),
		futureSkew:    settings.Duration("future-skew", 5*time.Minute, "how far after its receive time a message may be before it is rejected"),
		coolantAlertC: settings.Float("coolant-alert-c", 120, "raise an alert above this engine coolant temperature, °C"),
		alertSeverity: settings.Float("alert-severity", 3, "raise an alert for device events of at least this severity"),
		silence:       settings.Duration("silence", DefaultSilence, "raise device_silent when the edge has received nothing from a device for this long (wall clock), device_back when it sends again"),
		replayHorizon: settings.Duration("replay-horizon", DefaultReplayHorizon,
			"how long after a package's receive time device-state still recognises a copy of it that dedupe writes again when it replays (the device's last 2,048 packages at most)"),
	}
}

// Settings returns the pipeline's settings section; ConfigFrom reads it.
func Settings() settings.Section {
	s := declaredSettings()
	return settings.Section{Name: SettingsSection, Settings: []settings.Setting{
		s.prefix, s.partitions, s.fuse, s.dedupeWindow, s.dedupeBucket, s.futureSkew, s.coolantAlertC, s.alertSeverity, s.silence, s.replayHorizon,
	}}
}

// ConfigFrom returns the configuration that the pipeline's settings in v
// describe (defaults for those v does not hold). Resources (Sink, Logger,
// Now...) are the caller's to add.
func ConfigFrom(v settings.Values) Config {
	s := declaredSettings()
	return Config{
		Prefix:        s.prefix.Get(v),
		Partitions:    int32(s.partitions.Get(v)),
		Fuse:          s.fuse.Get(v),
		DedupeWindow:  s.dedupeWindow.Get(v),
		DedupeBucket:  s.dedupeBucket.Get(v),
		FutureSkew:    s.futureSkew.Get(v),
		CoolantAlertC: s.coolantAlertC.Get(v),
		AlertSeverity: s.alertSeverity.Get(v),
		Silence:       s.silence.Get(v),
		ReplayHorizon: s.replayHorizon.Get(v),
	}
}

// WithConfig returns v with the settings that cfg's shape fields (Prefix,
// Partitions, Fuse) describe, for callers that hold a Config and need the
// values, such as tests.
func WithConfig(v settings.Values, cfg Config) settings.Values {
	s := declaredSettings()
	v = s.prefix.With(v, cfg.Prefix)
	if cfg.Partitions != 0 {
		v = s.partitions.With(v, int(cfg.Partitions))
	}
	return s.fuse.With(v, cfg.Fuse)
}
