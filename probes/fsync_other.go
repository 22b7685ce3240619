//go:build !linux

package probes

import (
	"errors"
	"fmt"
)

var errUnsupported = errors.New("the fsync probe measures on Linux only")

// osFS refuses everywhere but Linux, where etcd runs in production.
type osFS struct{}

func (osFS) Create(string, int64) (syncFile, error) { return nil, errUnsupported }
func (osFS) Remove(string) error                    { return errUnsupported }
func (osFS) RemoveUnlocked(string) (bool, error)    { return false, errUnsupported }
func (osFS) Statfs(string) (fsStat, error)          { return fsStat{}, errUnsupported }
func (osFS) Device(string) (uint64, error)          { return 0, errUnsupported }

func devName(dev uint64) string { return fmt.Sprint(dev) }
