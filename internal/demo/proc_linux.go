package demo

import "syscall"

// sysProcAttr: a child the demo starts gets SIGTERM when the demo dies,
// even by SIGKILL, so that no Prometheus outlives it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
