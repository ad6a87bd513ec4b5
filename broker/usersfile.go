package broker

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// usersFilePoll is how often the users file is looked at for a change.
const usersFilePoll = time.Second

// usersFile is Config.UsersFile as last read: its stamp tells a change.
// Only the broker's watcher goroutine uses it after New.
type usersFile struct {
	path  string
	auth  *authenticator
	stamp fileStamp // of the last version tried, loaded or not
}

// fileStamp tells a file changed: its modification time and size.
type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}, nil
}

// loadUsersFile reads path and gives its users to auth; a missing,
// malformed or empty file is an error.
func loadUsersFile(path string, auth *authenticator) (*usersFile, error) {
	f := &usersFile{path: path, auth: auth}
	stamp, err := stampOf(path)
	if err == nil {
		err = f.load()
	}
	if err != nil {
		return nil, fmt.Errorf("broker users file: %w", err)
	}
	f.stamp = stamp
	return f, nil
}

// load reads the file and, when it holds valid users, makes them the
// broker's.
func (f *usersFile) load() error {
	data, err := os.ReadFile(f.path)
	if err != nil {
		return err
	}
	users, err := ParseUsers(data)
	if err == nil && len(users) == 0 {
		err = errors.New("no users")
	}
	if err != nil {
		return fmt.Errorf("%s: %w", f.path, err)
	}
	return f.auth.setUsers(users)
}

// watchUsersFile looks at the users file every usersFilePoll until the
// broker closes, and loads it again when its modification time or size
// changed. A version that does not load is logged once and leaves the
// users as they were.
func (b *Broker) watchUsersFile(f *usersFile) {
	tick := time.NewTicker(usersFilePoll)
	defer tick.Stop()
	for {
		select {
		case <-b.done:
			return
		case <-tick.C:
		}
		stamp, err := stampOf(f.path)
		if err != nil {
			if f.stamp != (fileStamp{}) {
				b.log.Error("broker: users file unreadable; keeping the users read before", "file", f.path, "error", err)
			}
			f.stamp = fileStamp{}
			continue
		}
		if stamp == f.stamp {
			continue
		}
		f.stamp = stamp
		if err := f.load(); err != nil {
			b.log.Error("broker: users file changed but does not load; keeping the users read before", "file", f.path, "error", err)
			continue
		}
		b.log.Info("broker: users file reloaded", "file", f.path, "users", len(f.auth.table.Load().users))
	}
}
