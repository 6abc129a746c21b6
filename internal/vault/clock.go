package vault

import "time"

// Clock is the time source; k8s.io/utils/clock's PassiveClock satisfies it, and so does
// its fake for tests.
type Clock interface {
	Now() time.Time
	Since(time.Time) time.Duration
}

type realClock struct{}

func (realClock) Now() time.Time                  { return time.Now() }
func (realClock) Since(t time.Time) time.Duration { return time.Since(t) }
