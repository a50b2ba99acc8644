package faults

import "syscall"

// procAttr puts a process in its own process group (a signal then reaches
// its children too) and has the kernel kill it when the harness's process
// dies, even by SIGKILL, so that a killed test leaves no process running
// (holding the infrastructure lock it inherited). The signal follows the
// thread that forked the process: see launcher.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
