package testenv

// StartEmbeddedArgs is StartEmbedded with more arguments for `opsrunner
// broker` (for example "--max-pending-bytes", "65536"). The broker runs as
// the opsrunner binary built without the race detector, whatever the
// tests are built with, so that measures of its process hold.
func StartEmbeddedArgs(args ...string) (*Broker, error) {
	return startEmbedded(func(*Broker) ([]string, error) { return args, nil })
}

// PID is the process id of the broker's process (for an embedded broker,
// the broker itself), 0 while it is stopped.
func (b *Broker) PID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.proc == nil {
		return 0
	}
	return b.proc.cmd.Process.Pid
}
