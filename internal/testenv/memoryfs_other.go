//go:build !linux

package testenv

// memoryFS: outside Linux no filesystem is recognised as memory-backed.
func memoryFS(string) string { return "" }
