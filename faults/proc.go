package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Exit is how one run of a process ended.
type Exit struct {
	// At is when the exit was seen.
	At time.Time
	// Code is the exit status, -1 when a signal ended the process.
	Code int
	// Signal names the signal that ended it, "" after a normal exit.
	Signal string
	// Wanted is true when the harness stopped the process on purpose.
	Wanted bool
}

func (e Exit) String() string {
	if e.Signal != "" {
		return "signal " + e.Signal
	}
	return "exit " + strconv.Itoa(e.Code)
}

// Spec describes a process to run.
type Spec struct {
	// Name identifies the process in logs and reports ("sink-1").
	Name string
	// Path is the executable; Args its arguments.
	Path string
	Args []string
	// Env is added to the test process's environment.
	Env []string
	// LogPath receives stdout and stderr, appended across restarts.
	LogPath string
}

// Proc is one supervised operating-system process, in its own process
// group so that a signal reaches its children too, and killed by the
// kernel when the harness's process dies (on Linux; procAttr). It can be
// started again after it exits; Exits keeps the history. Close ends it.
type Proc struct {
	spec Spec
	log  *slog.Logger

	mu      sync.Mutex
	launch  *launcher // started with the first run
	closed  bool
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current run exited
	running bool
	wanted  bool // the next exit is on purpose
	exits   []Exit
	starts  int
}

// NewProc returns a Proc for spec; it does not start it.
func NewProc(spec Spec, log *slog.Logger) *Proc {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Proc{spec: spec, log: log.With("proc", spec.Name)}
}

// Name returns the process's name.
func (p *Proc) Name() string { return p.spec.Name }

// LogPath returns the file that receives the process's output.
func (p *Proc) LogPath() string { return p.spec.LogPath }

// Start starts the process unless it runs.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running {
		return nil
	}
	if p.closed {
		return fmt.Errorf("faults: start %s: %w", p.spec.Name, errLauncherClosed)
	}
	out, err := os.OpenFile(p.spec.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("faults: log of %s: %w", p.spec.Name, err)
	}
	cmd := exec.Command(p.spec.Path, p.spec.Args...)
	cmd.Env = append(os.Environ(), p.spec.Env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = procAttr()
	if p.launch == nil {
		p.launch = newLauncher()
	}
	if err := p.launch.start(cmd); err != nil {
		_ = out.Close()
		return fmt.Errorf("faults: start %s: %w", p.spec.Name, err)
	}
	p.cmd, p.running, p.wanted = cmd, true, false
	p.starts++
	done := make(chan struct{})
	p.done = done
	p.log.Debug("started", "pid", cmd.Process.Pid, "start", p.starts)
	go func() {
		err := cmd.Wait()
		_ = out.Close()
		e := Exit{At: time.Now(), Code: cmd.ProcessState.ExitCode()}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			e.Signal = ws.Signal().String()
		}
		p.mu.Lock()
		e.Wanted = p.wanted
		p.exits = append(p.exits, e)
		p.running = false
		p.mu.Unlock()
		if !e.Wanted {
			// The last lines say why: the log is gone with the test's
			// folder by the time anyone reads the report.
			p.log.Warn("exited by itself", "exit", e.String(), "err", err, "last_lines", lastLines(p.spec.LogPath, 3))
		}
		close(done)
	}()
	return nil
}

// Close kills the process group and waits for the exit; Start then fails.
func (p *Proc) Close() error {
	// Closed first, so that a Start racing with Close cannot start a
	// process that the kill below does not see.
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.Kill()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.launch != nil {
		p.launch.close()
	}
	return err
}

// Running reports whether the process runs.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running
}

// Pid returns the pid of the current run (0 when it does not run).
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		return 0
	}
	return p.cmd.Process.Pid
}

// Starts counts the starts so far.
func (p *Proc) Starts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts
}

// Exits returns the history of exits.
func (p *Proc) Exits() []Exit {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Exit(nil), p.exits...)
}

// signal sends sig to the process group of the current run, marking the
// coming exit as wanted, and returns the channel closed at its exit (nil
// when it does not run).
func (p *Proc) signal(sig syscall.Signal) (<-chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		return nil, nil
	}
	p.wanted = true
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return p.done, fmt.Errorf("faults: signal %v to %s: %w", sig, p.spec.Name, err)
	}
	return p.done, nil
}

// Kill sends SIGKILL to the process group and waits for the exit.
func (p *Proc) Kill() error {
	done, err := p.signal(syscall.SIGKILL)
	if done != nil {
		<-done
	}
	return err
}

// Terminate sends SIGTERM and waits up to timeout for the exit. It returns
// the exit and how long it took; after the timeout it kills the process
// group and returns an error.
func (p *Proc) Terminate(timeout time.Duration) (Exit, time.Duration, error) {
	start := time.Now()
	done, err := p.signal(syscall.SIGTERM)
	if err != nil || done == nil {
		return Exit{}, 0, err
	}
	select {
	case <-done:
		exits := p.Exits()
		return exits[len(exits)-1], time.Since(start), nil
	case <-time.After(timeout):
		_ = p.Kill()
		return Exit{}, time.Since(start), fmt.Errorf("faults: %s still ran %v after SIGTERM; killed", p.spec.Name, timeout)
	}
}

// Wait waits for the current run to exit or ctx to end.
func (p *Proc) Wait(ctx context.Context) error {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("faults: wait for %s: %w", p.spec.Name, ctx.Err())
	}
}

// Ports hands out TCP ports on 127.0.0.1 for processes that bind them
// later. A port the kernel picks for ":0" comes from its ephemeral range,
// where any outgoing connection (a Kafka client's, say) may take it before
// the process binds it, which then fails for the whole run; these come from
// the span just below that range, are free when handed out, and are never
// handed out twice by one Ports.
type Ports struct {
	low, high int // the span, [low, high)
	given     map[int]bool
	rng       *rand.Rand
}

// NewPorts returns a Ports for the span below this machine's ephemeral
// range (/proc/sys/net/ipv4/ip_local_port_range; 32768 when unknown).
func NewPorts() *Ports {
	high := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 2048 {
				high = n
			}
		}
	}
	return &Ports{low: max(1024, high-12000), high: high, given: map[int]bool{},
		rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))}
}

// Free returns a port of the span that is free now and was not handed out
// before.
func (p *Ports) Free() (int, error) {
	for range 200 {
		port := p.low + p.rng.IntN(p.high-p.low)
		if p.given[port] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue // in use
		}
		l.Close()
		p.given[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("faults: no free port in %d-%d after 200 tries", p.low, p.high-1)
}

// lastLines returns the last n lines of the file at path (at most its last
// 8 KiB), or nil when it cannot be read.
func lastLines(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	const tail = 8 << 10
	if st, err := f.Stat(); err == nil && st.Size() > tail {
		if _, err := f.Seek(st.Size()-tail, io.SeekStart); err != nil {
			return nil
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return lines[max(0, len(lines)-n):]
}
