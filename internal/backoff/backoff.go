// Package backoff holds keyferry's one copy of exponential backoff arithmetic, shared by
// the provider client (failed logins) and the controllers (failed syncs).
package backoff

import "time"

// Policy doubles a wait from Base with each consecutive failure, up to Max.
type Policy struct {
	Base time.Duration
	Max  time.Duration
}

// Default is what keyferry uses for failed syncs and failed logins: 5s, 10s, 20s, ... 5m.
var Default = Policy{Base: 5 * time.Second, Max: 5 * time.Minute}

// After returns the wait after the given number of consecutive failures (1 for the
// first); zero failures wait nothing.
func (p Policy) After(failures int) time.Duration {
	if failures <= 0 || p.Base <= 0 {
		return 0
	}
	d := p.Base
	for i := 1; i < failures && d < p.Max; i++ {
		d *= 2
	}
	if p.Max > 0 {
		d = min(d, p.Max)
	}
	return d
}
