//go:build !linux

package demo

import "syscall"

// sysProcAttr: outside Linux there is no parent-death signal; Stop is the
// only way the demo's children end.
func sysProcAttr() *syscall.SysProcAttr { return nil }
