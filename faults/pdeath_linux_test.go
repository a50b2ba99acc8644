package faults

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestChildDiesWithItsParent: a process the harness started (Proc.Start)
// is killed when the harness's process dies, also by SIGKILL, so that a
// killed test leaves no replica running (holding the infrastructure lock
// it inherited). The parent starts the child from a thread that then
// ends: the child must outlive that thread and die with the process.
func TestChildDiesWithItsParent(t *testing.T) {
	dir := t.TempDir()
	parent := exec.Command(os.Args[0], "-test.run=^$")
	parent.Env = append(os.Environ(), pdeathParentEnv+"="+dir)
	var out bytes.Buffer
	parent.Stdout, parent.Stderr = &out, &out
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = parent.Wait()
		close(exited)
	}()
	var child int
	t.Cleanup(func() {
		_ = parent.Process.Kill()
		<-exited
		if child > 0 && alive(child) {
			_ = syscall.Kill(-child, syscall.SIGKILL) // its own process group
		}
	})
	err := Poll(t.Context(), 30*time.Second, 20*time.Millisecond, func() error {
		b, err := os.ReadFile(filepath.Join(dir, pdeathPidFile))
		if err != nil {
			select {
			case <-exited:
				return errors.New("the parent exited: " + out.String())
			default:
			}
			return err
		}
		child, err = strconv.Atoi(string(b))
		return err
	})
	if err != nil {
		t.Fatalf("the parent did not start its child: %v", err)
	}
	if !alive(child) {
		t.Fatalf("the child %d died when the thread that started it ended, before its parent did", child)
	}
	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	if err := Poll(t.Context(), 10*time.Second, 20*time.Millisecond, func() error {
		if alive(child) {
			return errors.New("still runs")
		}
		return nil
	}); err != nil {
		t.Fatalf("the child %d still runs 10 s after its parent was killed with SIGKILL", child)
	}
}

// alive reports whether process pid runs (a zombie, dead but not yet
// reaped, does not).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

// TestMain runs this test binary as a helper process when the environment
// asks for it (the parent-death test's parent and child), else the tests.
func TestMain(m *testing.M) {
	if dir := os.Getenv(pdeathParentEnv); dir != "" {
		if err := pdeathParent(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(1) // only a kill ends the parent well
	}
	if os.Getenv(pdeathChildEnv) != "" {
		pdeathChild()
	}
	os.Exit(m.Run())
}

// The parent-death test's helper processes: this test binary started as a
// parent, which starts the child as the harness starts its processes.
const (
	// pdeathParentEnv makes the test binary the parent: a folder to write
	// the child's pid to.
	pdeathParentEnv = "WATERSHED_FAULTS_PDEATH_PARENT"
	// pdeathChildEnv makes it the child, which runs until killed.
	pdeathChildEnv = "WATERSHED_FAULTS_PDEATH_CHILD"
	// pdeathPidFile is the file in that folder.
	pdeathPidFile = "child.pid"
)

// pdeathParent starts the child with a Proc from a goroutine locked to its
// OS thread that then exits, so that the runtime ends that thread (the
// trap of Linux's parent-death signal, which follows the thread that
// forked the child), waits until the thread is gone, and writes the
// child's pid to dir. Then it waits to be killed.
func pdeathParent(dir string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	p := NewProc(Spec{Name: "child", Path: self, Args: []string{"-test.run=^$"}, Env: []string{pdeathChildEnv + "=1", pdeathParentEnv + "="},
		LogPath: filepath.Join(dir, "child.log")}, nil)
	type started struct {
		tid int
		err error
	}
	// The runtime ends a thread whose locked goroutine exits, but never
	// the main thread: the starting goroutine must run on another one.
	runtime.LockOSThread()
	var s started
	for try := 0; ; try++ {
		ch := make(chan started)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			if syscall.Gettid() == syscall.Getpid() {
				ch <- started{}
				return
			}
			ch <- started{tid: syscall.Gettid(), err: p.Start()}
		}()
		if s = <-ch; s.tid != 0 {
			break
		}
		if try == 10 {
			return errors.New("the starting goroutine ran on the main thread every time")
		}
	}
	if s.err != nil {
		return s.err
	}
	task := fmt.Sprintf("/proc/self/task/%d", s.tid)
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(task); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Since(start) > 30*time.Second {
			return fmt.Errorf("the starting thread %d did not end", s.tid)
		}
	}
	tmp := filepath.Join(dir, pdeathPidFile+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(p.Pid())), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, pdeathPidFile)); err != nil {
		return err
	}
	for {
		time.Sleep(time.Hour)
	}
}

// pdeathChild runs until killed.
func pdeathChild() {
	for {
		time.Sleep(time.Hour)
	}
}

// Close kills a running process and keeps it from starting again.
func TestProcClose(t *testing.T) {
	p := NewProc(Spec{Name: "child", Path: os.Args[0], Args: []string{"-test.run=^$"}, Env: []string{pdeathChildEnv + "=1"},
		LogPath: filepath.Join(t.TempDir(), "child.log")}, nil)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	pid := p.Pid()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if p.Running() || alive(pid) {
		t.Fatalf("process %d runs after Close", pid)
	}
	if err := p.Start(); !errors.Is(err, errLauncherClosed) {
		t.Fatalf("Start after Close: %v, want errLauncherClosed", err)
	}
}
