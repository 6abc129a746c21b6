package receiver

import (
	"context"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/keyferry/keyferry/internal/webhook"
)

// Default limits of the listener, per replica. A source may send 20 hooks a second (40 at
// once), all of them together 200 (400); a round per receiver per second at most.
var (
	DefaultPerSource      = rate.Limit(20)
	DefaultPerSourceBurst = 40
	DefaultGlobal         = rate.Limit(200)
	DefaultGlobalBurst    = 400
)

// DefaultLimits are the listener's rate limits unless set otherwise.
func DefaultLimits() *webhook.Limits {
	return &webhook.Limits{PerSource: DefaultPerSource, PerSourceBurst: DefaultPerSourceBurst,
		Global: DefaultGlobal, GlobalBurst: DefaultGlobalBurst, MaxSources: 10000}
}

// Listener serves hooks on every replica, leader or not: a hook that reaches a follower
// still marks its bindings (through the API server), and the leader's reconcilers take it
// from there. It starts once the receivers' and credentials' caches are synced.
type Listener struct {
	Server     *webhook.Server
	Index      *Index
	Receivers  cache.Informers
	Secrets    cache.Informers
	Rounder    *Rounder
	Limits     *webhook.Limits
	Clock      clock.WithDelayedExecution
	Observe    func(receiver, result string)
	RoundEvery time.Duration
}

// NeedLeaderElection is false: every replica answers hooks.
func (l *Listener) NeedLeaderElection() bool { return false }

// Start indexes the receivers and serves until ctx ends.
func (l *Listener) Start(ctx context.Context) error {
	rounds := &webhook.Rounds{Interval: l.RoundEvery, Clock: l.Clock, Run: l.Rounder.Run}
	if rounds.Interval <= 0 {
		rounds.Interval = time.Second
	}
	l.Index.Removed = rounds.Forget
	if err := l.Index.Watch(ctx, l.Receivers, l.Secrets); err != nil {
		return err
	}
	if l.Limits == nil {
		l.Limits = DefaultLimits()
	}
	l.Server.Handler = &webhook.Handler{
		Lookup: l.Index.Lookup, Limits: l.Limits, Rounds: rounds, Now: l.Clock.Now, Observe: l.Observe,
		// Twice the timestamp window: a generic-hmac request is refused as stale before
		// its replay entry is forgotten. Bounded: a flood pushes out only older entries.
		Replays: &webhook.Replays{Window: 2 * webhook.MaxSkew, Max: 100000},
	}
	return l.Server.Serve(ctx)
}
