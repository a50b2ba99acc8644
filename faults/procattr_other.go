//go:build !linux

package faults

import "syscall"

// procAttr puts a process in its own process group, so that a signal
// reaches its children too. Outside Linux there is no parent-death signal:
// a process outlives a harness killed before its cleanup.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
