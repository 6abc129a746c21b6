package push

import (
	"context"
	"encoding/hex"
	"maps"
	"slices"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/render"
	"github.com/keyferry/keyferry/internal/vault"
)

// action is what a push does with one key.
type action int

const (
	// actWrite: the vault lacks the key, or holds another value keyferry may replace.
	actWrite action = iota
	// actInSync: the vault already holds the Secret's value.
	actInSync
	// actConflict: someone else changed the key since keyferry pushed it; left alone.
	actConflict
	// actExists: updatePolicy IfNotExists and the key exists with another value; left alone.
	actExists
)

// policies are the spec fields that decide a push.
type policies struct {
	update   kf.UpdatePolicy
	conflict kf.ConflictPolicy
}

// digester is the keyed digest of one key's value (per installation).
type digester func(key, value string) string

func newDigester(hmacKey []byte) digester {
	return func(key, value string) string {
		return hex.EncodeToString(render.KeyDigest(hmacKey, key, []byte(value))[:16])
	}
}

// decide says, for one key, what to do: current is the vault's value (exists says whether
// it has the key), want the Secret's, pushed the digest of what keyferry last pushed ("" if
// never).
func decide(key, want, current string, exists bool, pushed string, p policies, digest digester) action {
	switch {
	case exists && current == want:
		return actInSync
	case !exists:
		return actWrite
	case p.update == kf.UpdatePolicyIfNotExists:
		return actExists
	case pushed != "" && digest(key, current) != pushed && p.conflict != kf.ConflictPolicyOverwrite:
		return actConflict
	default:
		return actWrite
	}
}

// pushJob is one push: what to write where, and what keyferry pushed before.
type pushJob struct {
	read   vault.Target
	target vault.PushTarget
	want   map[string]string
	pushed map[string]string // key -> digest of what keyferry last pushed
	p      policies
	digest digester
}

// holdsPushed says whether every key the job would push was pushed with its current
// value (status.pushed has its digest), and nothing more is recorded: the Secret has not
// changed since the last push.
func (j pushJob) holdsPushed() bool {
	if len(j.want) != len(j.pushed) {
		return false
	}
	for k, v := range j.want {
		if d, ok := j.pushed[k]; !ok || d != j.digest(k, v) {
			return false
		}
	}
	return true
}

// pushResult is what a push did. err stops the push at the key it concerns; keys written
// before it stay recorded.
type pushResult struct {
	// pushed maps the keys the vault holds as keyferry pushed them to their digest.
	pushed    map[string]string
	wrote     int
	conflicts []string
	existing  []string
	err       error
}

// pusher is the part of the vault client a push uses.
type pusher interface {
	ReadEnvironment(ctx context.Context, t vault.Target) (map[string]string, error)
	PushKey(ctx context.Context, t vault.PushTarget, key, value string) error
}

// run reads the environment once and writes only the keys whose value differs, one
// request per key (never the bulk endpoint, which replaces the environment).
func (j pushJob) run(ctx context.Context, c pusher) pushResult {
	res := pushResult{pushed: map[string]string{}}
	current, err := c.ReadEnvironment(ctx, j.read)
	if err != nil {
		res.err = err
		// Nothing was learnt: what was pushed before still stands.
		res.pushed = j.pushed
		return res
	}
	for _, key := range slices.Sorted(maps.Keys(j.want)) {
		want := j.want[key]
		cur, exists := current[key]
		switch decide(key, want, cur, exists, j.pushed[key], j.p, j.digest) {
		case actInSync:
			res.pushed[key] = j.digest(key, want)
		case actConflict:
			res.conflicts = append(res.conflicts, key)
		case actExists:
			res.existing = append(res.existing, key)
		case actWrite:
			if err := c.PushKey(ctx, j.target, key, want); err != nil {
				res.err = err
				// Keys not reached keep what was pushed before (when the vault still
				// holds it), so a conflict is still seen next time.
				for _, k := range slices.Sorted(maps.Keys(j.want)) {
					if _, done := res.pushed[k]; !done && j.pushed[k] != "" {
						if v, ok := current[k]; ok && j.digest(k, v) == j.pushed[k] {
							res.pushed[k] = j.pushed[k]
						}
					}
				}
				return res
			}
			res.wrote++
			res.pushed[key] = j.digest(key, want)
		}
	}
	return res
}

// deleter is the part of the vault client a deletion uses.
type deleter interface {
	ReadEnvironment(ctx context.Context, t vault.Target) (map[string]string, error)
	DeleteKey(ctx context.Context, t vault.PushTarget, key string) error
}

// deleteOwned removes the keys keyferry pushed whose value in the vault is still the one
// it pushed (a key someone changed since is theirs now). In the result, pushed holds the
// keys deleted, conflicts the keys left.
func (j pushJob) deleteOwned(ctx context.Context, c deleter) pushResult {
	res := pushResult{pushed: map[string]string{}}
	current, err := c.ReadEnvironment(ctx, j.read)
	if err != nil {
		res.err = err
		return res
	}
	for _, key := range slices.Sorted(maps.Keys(j.pushed)) {
		v, ok := current[key]
		switch {
		case !ok:
		case j.digest(key, v) != j.pushed[key]:
			res.conflicts = append(res.conflicts, key)
		default:
			if err := c.DeleteKey(ctx, j.target, key); err != nil {
				res.err = err
				return res
			}
			res.pushed[key] = j.pushed[key]
		}
	}
	return res
}
