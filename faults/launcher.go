package faults

import (
	"errors"
	"os/exec"
	"runtime"
	"sync"
)

// errLauncherClosed is returned by a closed launcher's start.
var errLauncherClosed = errors.New("the process was closed")

// launcher starts processes from one OS thread that stays for the
// launcher's life and after it. Linux sends a child its parent-death signal
// (procAttr) when the thread that forked it ends, not the process: a child
// started from a goroutine locked to a thread that later exits (the
// runtime then ends the thread) would be killed with that thread. This
// goroutine holds its thread until closed, and unlocks it before it
// returns, so that the runtime keeps the thread (an unlocked thread is
// never ended) until the process exits.
type launcher struct {
	reqs chan launch
	stop chan struct{}
	once sync.Once
}

type launch struct {
	cmd  *exec.Cmd
	done chan error
}

func newLauncher() *launcher {
	l := &launcher{reqs: make(chan launch), stop: make(chan struct{})}
	go l.run()
	return l
}

func (l *launcher) run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for {
		select {
		case r := <-l.reqs:
			r.done <- r.cmd.Start()
		case <-l.stop:
			return
		}
	}
}

// start starts cmd on the launcher's thread.
func (l *launcher) start(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	select {
	case l.reqs <- launch{cmd: cmd, done: done}:
		return <-done
	case <-l.stop:
		return errLauncherClosed
	}
}

// close ends the launcher; the processes it started keep running.
func (l *launcher) close() { l.once.Do(func() { close(l.stop) }) }
