package faults

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Infra controls the real Kafka and Cassandra through
// scripts/infra/infra.sh: restart, stop and resume keep their data.
type Infra struct {
	// Script is the path of infra.sh.
	Script string
	// Env is added to the script's environment (its settings: the infra
	// folder and ports of the services it controls).
	Env []string
	// Brokers and CassandraHosts are the services' client addresses.
	Brokers, CassandraHosts []string
	// Log receives what the script prints.
	Log *slog.Logger
}

// run runs the script with args and returns its combined output.
func (in *Infra) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, in.Script, args...)
	cmd.Env = append(os.Environ(), in.Env...)
	out, err := cmd.CombinedOutput()
	if in.Log != nil {
		in.Log.Debug("infra.sh", "args", args, "output", string(out))
	}
	if err != nil {
		return string(out), fmt.Errorf("faults: infra.sh %s: %w\n%s", strings.Join(args, " "), err, tail(string(out), 2000))
	}
	return string(out), nil
}

// Restart stops service ("kafka" or "cassandra") and starts it again on
// its data; it returns once the service answers again.
func (in *Infra) Restart(ctx context.Context, service string) error {
	_, err := in.run(ctx, "restart", service)
	return err
}

// Kill ends service or cluster node ("kafka-2", "cassandra-1") with
// SIGKILL, as a crash would; its data stays for Resume.
func (in *Infra) Kill(ctx context.Context, service string) error {
	_, err := in.run(ctx, "kill", service)
	return err
}

// Stop stops service, keeping its data.
func (in *Infra) Stop(ctx context.Context, service string) error {
	_, err := in.run(ctx, "stop", service)
	return err
}

// Resume starts service again on the data of its last run and waits until
// it answers.
func (in *Infra) Resume(ctx context.Context, service string) error {
	_, err := in.run(ctx, "resume", service)
	return err
}

// EnvLines returns the KEY=VALUE lines of `infra.sh env`: the addresses
// and logins that clients of the services need.
func (in *Infra) EnvLines(ctx context.Context) ([]string, error) {
	out, err := in.run(ctx, "env")
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if k, _, ok := strings.Cut(l, "="); ok && strings.HasPrefix(k, "WATERSHED_") {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// Status returns the script's status lines.
func (in *Infra) Status(ctx context.Context) string {
	out, _ := in.run(ctx, "status")
	return out
}

// PrivateInfra starts Kafka and Cassandra with infra.sh in their own folder
// dir on free ports, reusing the jars that `infra.sh fetch` put into the
// repository's .infra (fetching them first when missing). Call Close to
// stop them.
func PrivateInfra(ctx context.Context, repoRoot, dir string, log *slog.Logger) (*Infra, error) {
	script := filepath.Join(repoRoot, "scripts", "infra", "infra.sh")
	shared := filepath.Join(repoRoot, ".infra")
	in := &Infra{Script: script, Log: log}
	for _, svc := range []string{"kafka", "cassandra"} {
		if _, err := os.Stat(filepath.Join(shared, svc, "lib", ".fetched")); err != nil {
			if _, err := in.run(ctx, "fetch"); err != nil {
				return nil, err
			}
			break
		}
	}
	for _, svc := range []string{"kafka", "cassandra"} {
		if err := os.MkdirAll(filepath.Join(dir, svc), 0o755); err != nil {
			return nil, fmt.Errorf("faults: infra folder: %w", err)
		}
		if err := os.Symlink(filepath.Join(shared, svc, "lib"), filepath.Join(dir, svc, "lib")); err != nil {
			return nil, fmt.Errorf("faults: link the %s jars: %w", svc, err)
		}
	}
	var ports [5]int
	free := NewPorts()
	for i := range ports {
		p, err := free.Free()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	in.Env = []string{
		"WATERSHED_INFRA_DIR=" + dir,
		"WATERSHED_KAFKA_PORT=" + strconv.Itoa(ports[0]),
		"WATERSHED_KAFKA_CONTROLLER_PORT=" + strconv.Itoa(ports[1]),
		"WATERSHED_CASSANDRA_PORT=" + strconv.Itoa(ports[2]),
		"WATERSHED_CASSANDRA_STORAGE_PORT=" + strconv.Itoa(ports[3]),
		"WATERSHED_KAFKA_SASL_PORT=" + strconv.Itoa(ports[4]),
	}
	if _, err := in.run(ctx, "start", "all"); err != nil {
		return nil, err
	}
	in.Brokers = []string{"127.0.0.1:" + strconv.Itoa(ports[0])}
	in.CassandraHosts = []string{"127.0.0.1:" + strconv.Itoa(ports[2])}
	return in, nil
}

// Close stops both services (the script's stop is idempotent).
func (in *Infra) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := in.run(ctx, "stop", "all")
	return err
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
