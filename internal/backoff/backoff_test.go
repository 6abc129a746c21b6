package backoff

import (
	"testing"
	"time"
)

func TestAfter(t *testing.T) {
	p := Policy{Base: 5 * time.Second, Max: time.Minute}
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{
		{0, 0}, {-1, 0}, {1, 5 * time.Second}, {2, 10 * time.Second}, {3, 20 * time.Second},
		{4, 40 * time.Second}, {5, time.Minute}, {6, time.Minute}, {1 << 30, time.Minute},
	} {
		if got := p.After(tc.failures); got != tc.want {
			t.Errorf("After(%d) = %s, want %s", tc.failures, got, tc.want)
		}
	}
	if got := Default.After(100); got != 5*time.Minute {
		t.Errorf("Default.After(100) = %s, want 5m", got)
	}
}
