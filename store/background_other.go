//go:build !linux

package store

// backgroundThread does nothing outside Linux, where a nice value is the
// whole process's, not one thread's.
func backgroundThread() {}
