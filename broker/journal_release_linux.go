package broker

import (
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// releaseMapped drops the pages of db's memory map from the process (they
// stay in the page cache; a later read maps them again).
func releaseMapped(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		size := uintptr(tx.Size()) &^ uintptr(syscall.Getpagesize()-1)
		if size == 0 {
			return nil
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, db.Info().Data, size, syscall.MADV_DONTNEED); errno != 0 {
			return errno
		}
		return nil
	})
}
