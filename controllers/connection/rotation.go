package connection

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/keyferry/keyferry/controllers/conditions"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/vault"
)

// A rotation is a small state machine whose durable state is the credential Secret
// itself: each write there is one atomic step (data and annotations together, under the
// Secret's resourceVersion), so a manager killed anywhere resumes from what the Secret
// says, never from memory:
//
//	(no previous key)                       idle, or before the create: leftovers of an
//	                                        interrupted create carry keyName and are revoked
//	data[key-previous] + previous-key-id    the new key is written, not yet verified: the
//	                                        previous key serves; verify, then drop it
//	previous-key-id alone                   the new key serves; revoke the previous one
//
// status.rotation reports that state (and the schedule); it is written once per pass by
// the connection's status patch, like every other field.

// Rotation steps, for Crash (tests) and messages.
const (
	StepCreate = "create"
	StepWrite  = "write"
	StepVerify = "verify"
	StepRevoke = "revoke"
)

// rotateNowFloor is the least time between two rotations asked by keyferry.dev/rotate-now.
const rotateNowFloor = 10 * time.Second

// stoppedRetry is how long a stopped rotation waits before it tries again by itself.
const stoppedRetry = time.Hour

// maxLeftovers bounds the leftover keys one pass revokes before it creates a key.
const maxLeftovers = 3

// rotation is what one pass did and saw of a connection's rotation.
type rotation struct {
	status kf.RotationStatus
	// stop says why the rotation cannot go on now (a refused create, a missing label, a
	// concurrent edit); nil when it is on track.
	stop *conditions.ConditionError
	// retryAt is when to come back for a step that failed transiently.
	retryAt time.Time
	// wrote says the pass wrote the Secret (the serving token is read again).
	wrote bool
	// rotated describes a completed rotation, for an Event.
	rotated string
}

// rotator carries out rotations for one reconciler.
type rotator struct {
	client client.Client
	live   client.Reader
	fresh  *freshReader
	now    func() time.Time
	// minEvery is the shortest every honoured (1h; tests lower it by a manager flag).
	minEvery time.Duration
	// crash, when set, is asked after each step; an error ends the pass there, as a
	// killed manager would (tests).
	crash func(conn kf.Connection, step string) error

	mu sync.Mutex
	// revokeAfter holds back the revoke of a previous key this process just stopped using.
	revokeAfter map[types.UID]time.Time
	// last is what this process last computed per connection: the connection read from
	// the cache may not show it yet (a rotate-now read as not handled would rotate twice,
	// a stop read against a stale observedGeneration would be lifted at once).
	last map[types.UID]memo
}

// memo is a rotation status and the generation a stop in it was for.
type memo struct {
	status         kf.RotationStatus
	stopGeneration int64
}

// lastMemo returns what this process last computed for conn, else what its status says
// (a new process reads a fresh cache).
func (r *rotator) lastMemo(conn kf.Connection) memo {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.last[conn.GetUID()]; ok {
		return memo{status: *m.status.DeepCopy(), stopGeneration: m.stopGeneration}
	}
	m := memo{status: kf.RotationStatus{Phase: kf.RotationIdle}, stopGeneration: conn.ConnectionStatus().ObservedGeneration}
	if st := conn.ConnectionStatus().Rotation; st != nil {
		m.status = *st.DeepCopy()
	}
	return m
}

func (r *rotator) remember(conn kf.Connection, m memo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[types.UID]memo{}
	}
	r.last[conn.GetUID()] = m
}

// forget drops what the rotator keeps of a deleted connection.
func (r *rotator) forget(uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.last, uid)
	delete(r.revokeAfter, uid)
}

// rotate runs the rotation of conn as far as it can go in this pass. cached is the
// credential Secret as the pass read it; c is the connection's client.
func (r *rotator) rotate(ctx context.Context, conn kf.Connection, c *vault.Client, cached *corev1.Secret) (rotation, error) {
	spec, ref := conn.ConnectionSpec().RotatedCredential()
	m := r.lastMemo(conn)
	out := rotation{status: m.status}
	defer func() {
		if out.stop != nil {
			m.stopGeneration = conn.GetGeneration()
		}
		r.remember(conn, memo{status: *out.status.DeepCopy(), stopGeneration: m.stopGeneration})
	}()
	if out.status.Phase == "" {
		out.status.Phase = kf.RotationIdle
	}
	keys := c.Keys()
	if keys == nil {
		out.stop = conditions.StalledErr(kf.ReasonInvalidSpec, "provider %s documents no key API: keyferry rotates keyway and knowledgestack keys", conn.ConnectionSpec().Provider)
		return out, nil
	}
	if cached.Labels[kf.LabelRotate] != "true" {
		out.stop = conditions.StalledErr(kf.ReasonNotAllowed, "Secret %s/%s is not labelled %s=true: label it to let keyferry write rotated keys into it", cached.Namespace, cached.Name, kf.LabelRotate)
		return out, nil
	}
	now := r.now()
	st := &out.status
	rotateNow := conn.GetAnnotations()[kf.AnnotationRotateNow]
	wantNow := rotateNow != "" && rotateNow != st.LastHandledRotateNow
	if last := st.LastRotationTime; wantNow && last != nil && now.Sub(last.Time) < rotateNowFloor {
		// A tenant changing the annotation in a loop gets one rotation per floor, each
		// handling the latest value, not one per change.
		out.retryAt = last.Add(rotateNowFloor)
		wantNow = false
	}
	if st.Phase == kf.RotationStopped && m.stopGeneration != conn.GetGeneration() {
		st.Phase, st.NextRotation = kf.RotationIdle, nil // a new spec is worth a new try
	}
	state := keyStateOf(cached, ref.Key)
	r.describe(st, state, keys, spec)
	inFlight := state.previous != "" || state.previousID != ""
	if st.Phase == kf.RotationStopped && !wantNow && st.NextRotation != nil && now.Before(st.NextRotation.Time) {
		return out, nil // waiting before trying again
	}
	if !inFlight {
		if st.Phase != kf.RotationStopped {
			st.Phase = kf.RotationIdle
		}
		due := st.NextRotation == nil || !now.Before(st.NextRotation.Time)
		if st.CurrentKeyID != "" && st.CreatedAt != nil && !due && !wantNow {
			return out, nil
		}
	}
	// Something is to be done: act on the Secret as it is now, not as the cache saw it.
	sec := &corev1.Secret{}
	if err := r.live.Get(ctx, types.NamespacedName{Namespace: cached.Namespace, Name: cached.Name}, sec); err != nil {
		return out, fmt.Errorf("reading credential Secret %s/%s: %w", cached.Namespace, cached.Name, err)
	}
	state = keyStateOf(sec, ref.Key)
	r.describe(st, state, keys, spec)
	var err error
	switch {
	case state.previous != "":
		err = r.verify(ctx, conn, c, sec, ref.Key, state, &out)
	case state.previousID != "":
		err = r.revokePrevious(ctx, conn, c, sec, state, &out)
	default:
		err = r.start(ctx, conn, c, sec, ref.Key, state, spec, wantNow, &out)
	}
	if out.stop != nil {
		st.Phase = kf.RotationStopped
		st.LastError, st.LastErrorReason = out.stop.Message, out.stop.Reason
		st.NextRotation = conditions.TimePtr(now.Add(min(stoppedRetry, r.every(spec))))
		if wantNow {
			st.LastHandledRotateNow = rotateNow
		}
	} else if out.rotated != "" && wantNow {
		st.LastHandledRotateNow = rotateNow
	}
	return out, err
}

// every is the key life honoured: the spec's, but never under the operator's floor.
func (r *rotator) every(spec *kf.KeyRotation) time.Duration { return max(spec.GetEvery(), r.minEvery) }

// keyState is what the credential Secret says of its keys.
type keyState struct {
	token, previous string
	id, previousID  string
	createdAt       time.Time
	expiresAt       time.Time
}

func keyStateOf(s *corev1.Secret, key string) keyState {
	a := s.Annotations
	ks := keyState{
		token: strings.TrimSpace(string(s.Data[key])), previous: strings.TrimSpace(string(s.Data[key+kf.PreviousKeySuffix])),
		id: a[kf.AnnotationKeyID], previousID: a[kf.AnnotationPreviousKeyID],
	}
	ks.createdAt, _ = time.Parse(time.RFC3339, a[kf.AnnotationKeyCreatedAt])
	ks.expiresAt, _ = time.Parse(time.RFC3339, a[kf.AnnotationKeyExpiresAt])
	return ks
}

// describe brings the status' picture of the current key in line with the Secret: a key
// that is not the one status describes (a human replaced it) is described afresh.
func (r *rotator) describe(st *kf.RotationStatus, ks keyState, keys *vault.KeyAPI, spec *kf.KeyRotation) {
	prefix := keys.Prefix(ks.token)
	if ks.id != "" && ks.id != st.CurrentKeyID || prefix != st.CurrentKeyPrefix {
		// Another key than status describes (a human replaced it): a stopped rotation
		// starts over with it, unless that edit is what stopped it (Conflict stays shown
		// until its retry).
		st.CurrentKeyID, st.CurrentKeyPrefix, st.CreatedAt, st.ExpiresAt = ks.id, prefix, nil, nil
		if st.Phase == kf.RotationStopped && st.LastErrorReason != kf.ReasonConflict {
			st.Phase, st.NextRotation, st.LastError, st.LastErrorReason = kf.RotationIdle, nil, "", ""
		}
	}
	if !ks.createdAt.IsZero() {
		st.CreatedAt = conditions.TimePtr(ks.createdAt)
	}
	if !ks.expiresAt.IsZero() {
		st.ExpiresAt = conditions.TimePtr(ks.expiresAt)
	}
	st.PreviousKeyID = ks.previousID
	switch {
	case ks.previous != "":
		st.Phase = kf.RotationRotating
	case ks.previousID != "":
		st.Phase = kf.RotationRevoking
	case st.Phase != kf.RotationStopped:
		st.Phase = kf.RotationIdle
	}
	if st.CreatedAt != nil && st.Phase != kf.RotationStopped {
		st.NextRotation = conditions.TimePtr(st.CreatedAt.Add(r.every(spec)))
	}
}

// start finds the current key, clears leftovers of an interrupted create, creates the new
// key and writes it beside the current one; then goes on to verify it.
func (r *rotator) start(ctx context.Context, conn kf.Connection, c *vault.Client, sec *corev1.Secret, key string, ks keyState, spec *kf.KeyRotation, wantNow bool, out *rotation) error {
	st := &out.status
	keys := c.Keys()
	list, err := c.ListKeys(ctx, ks.token)
	if err != nil {
		return r.failed(out, "listing API keys", keys, err)
	}
	cur, found := currentKey(list, ks, keys)
	switch {
	case !found && ks.id == "" && !keys.IDFromList:
		out.stop = conditions.StalledErr(kf.ReasonInvalidSpec, "%s cannot tell which API key the Secret holds: annotate Secret %s/%s with %s: <the key's id> (GET /v1/api-keys lists the ids)", conn.ConnectionSpec().Provider, sec.Namespace, sec.Name, kf.AnnotationKeyID)
		return nil
	case !found:
		out.stop = conditions.StalledErr(kf.ReasonRotationFailed, "the key in Secret %s/%s is not among the account's active API keys (a session token or a revoked key?): keyferry rotates API keys only", sec.Namespace, sec.Name)
		return nil
	}
	st.CurrentKeyID = cur.ID
	if st.CreatedAt == nil && !cur.CreatedAt.IsZero() {
		st.CreatedAt = conditions.TimePtr(cur.CreatedAt)
	}
	if st.ExpiresAt == nil && !cur.ExpiresAt.IsZero() {
		st.ExpiresAt = conditions.TimePtr(cur.ExpiresAt)
	}
	if st.CreatedAt == nil {
		// A hand-made key whose age nobody reports: its life is counted from now.
		st.CreatedAt = conditions.TimePtr(r.now())
	}
	st.NextRotation = conditions.TimePtr(st.CreatedAt.Add(r.every(spec)))
	if r.now().Before(st.NextRotation.Time) && !wantNow {
		return nil // it was only a matter of knowing the key
	}
	name := spec.GetKeyName(conn)
	n := 0
	for _, k := range list {
		if k.Name != name || k.ID == cur.ID || !k.Active {
			continue
		}
		if n++; n > maxLeftovers {
			out.stop = conditions.StalledErr(kf.ReasonRotationFailed, "more than %d active keys are named %s: revoke the ones not in use by hand", maxLeftovers, name)
			return nil
		}
		if err := c.RevokeKey(ctx, ks.token, k.ID); err != nil {
			return r.failed(out, "revoking the leftover key "+k.ID+" of an interrupted rotation", keys, err)
		}
	}
	nk := vault.NewKey{Name: name, Environment: cur.Environment, Scopes: cur.Scopes}
	if len(spec.Scopes) > 0 {
		nk.Scopes = make([]string, 0, len(spec.Scopes))
		for _, sc := range spec.Scopes {
			nk.Scopes = append(nk.Scopes, string(sc))
		}
	}
	if spec.ExpiresInDays != nil {
		nk.ExpiresInDays = int(*spec.ExpiresInDays)
	}
	if nk.Environment == "" && strings.HasPrefix(ks.token, "kw_") {
		nk.Environment, _, _ = strings.Cut(strings.TrimPrefix(ks.token, "kw_"), "_")
	}
	created, value, err := c.CreateKey(ctx, ks.token, nk)
	if err != nil {
		return r.failed(out, "creating an API key", keys, err)
	}
	if err := r.step(conn, StepCreate); err != nil {
		return err
	}
	// Written with the Secret's resourceVersion: an edit since it was read wins.
	orig := sec.DeepCopy()
	sec.Data[key] = []byte(value)
	sec.Data[key+kf.PreviousKeySuffix] = []byte(ks.token)
	setAnnotation(sec, kf.AnnotationKeyID, created.ID)
	setAnnotation(sec, kf.AnnotationPreviousKeyID, cur.ID)
	setAnnotation(sec, kf.AnnotationKeyCreatedAt, created.CreatedAt.UTC().Format(time.RFC3339))
	setAnnotation(sec, kf.AnnotationKeyExpiresAt, formatTime(created.ExpiresAt))
	if err := r.write(ctx, orig, sec); err != nil {
		// The new key is of no use now: revoke it with the key that still serves.
		if rerr := c.RevokeKey(ctx, ks.token, created.ID); rerr != nil {
			err = fmt.Errorf("%w (and revoking the unused new key %s failed: %s; revoke it by hand)", err, created.ID, rerr.Error())
		}
		if apierrors.IsConflict(err) {
			out.stop = conditions.StalledErr(kf.ReasonConflict, "Secret %s/%s changed while keyferry rotated its key: the edit wins, the new key %s was revoked", sec.Namespace, sec.Name, created.ID)
			return nil
		}
		return err
	}
	out.wrote = true
	if err := r.step(conn, StepWrite); err != nil {
		return err
	}
	ks = keyStateOf(sec, key)
	r.describe(st, ks, keys, spec)
	return r.verify(ctx, conn, c, sec, key, ks, out)
}

// verify proves the new key with one read; proven, it drops the previous key from the
// Secret (the new one serves from then on) and goes on to revoke it. A key the provider
// refuses is rolled back: the previous key is put back and the new one revoked.
func (r *rotator) verify(ctx context.Context, conn kf.Connection, c *vault.Client, sec *corev1.Secret, key string, ks keyState, out *rotation) error {
	keys := c.Keys()
	if err := c.VerifyKey(ctx, ks.token); err != nil {
		ve, ok := vault.AsError(err)
		if !ok || (ve.Reason != vault.ReasonUnauthorized && ve.Reason != vault.ReasonForbidden) {
			return r.failed(out, "verifying the new key", keys, err)
		}
		orig := sec.DeepCopy()
		sec.Data[key] = []byte(ks.previous)
		delete(sec.Data, key+kf.PreviousKeySuffix)
		setAnnotation(sec, kf.AnnotationKeyID, ks.previousID)
		setAnnotation(sec, kf.AnnotationPreviousKeyID, "")
		setAnnotation(sec, kf.AnnotationKeyCreatedAt, "")
		setAnnotation(sec, kf.AnnotationKeyExpiresAt, "")
		if werr := r.write(ctx, orig, sec); werr != nil {
			return werr
		}
		out.wrote = true
		msg := fmt.Sprintf("the new key %s failed its verifying read (%s): the previous key %s serves again", ks.id, ve.Error(), ks.previousID)
		if rerr := c.RevokeKey(ctx, ks.previous, ks.id); rerr != nil {
			msg += "; revoking the new key failed (" + rerr.Error() + "): revoke " + ks.id + " by hand"
		}
		out.status.CurrentKeyID, out.status.PreviousKeyID = ks.previousID, ""
		out.stop = conditions.StalledErr(kf.ReasonRotationFailed, "%s", msg)
		return nil
	}
	if err := r.step(conn, StepVerify); err != nil {
		return err
	}
	orig := sec.DeepCopy()
	delete(sec.Data, key+kf.PreviousKeySuffix)
	if err := r.write(ctx, orig, sec); err != nil {
		return err
	}
	out.wrote = true
	out.status.Phase = kf.RotationRevoking
	// The new key serves from now on. The previous one is revoked once every request
	// that may still carry it has ended (they are bounded by the request timeout) and the
	// other shards have seen the Secret change.
	c.SetToken(ks.token)
	r.holdRevoke(conn, c.RequestTimeout()+revokeGrace)
	out.retryAt = r.revokeAt(conn)
	return nil
}

// revokeGrace is added to the request timeout before the previous key is revoked.
const revokeGrace = 2 * time.Second

func (r *rotator) holdRevoke(conn kf.Connection, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.revokeAfter == nil {
		r.revokeAfter = map[types.UID]time.Time{}
	}
	r.revokeAfter[conn.GetUID()] = r.now().Add(d)
}

// revokeAt is when the previous key of conn may be revoked; zero when at once (this
// process did not just switch keys: a restarted manager has no request in flight).
func (r *rotator) revokeAt(conn kf.Connection) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.revokeAfter[conn.GetUID()]
}

// revokePrevious revokes the key the rotation replaced (authenticated with the new one)
// and clears its id from the Secret: the rotation is done.
func (r *rotator) revokePrevious(ctx context.Context, conn kf.Connection, c *vault.Client, sec *corev1.Secret, ks keyState, out *rotation) error {
	if at := r.revokeAt(conn); r.now().Before(at) {
		out.retryAt = at
		return nil
	}
	if err := c.RevokeKey(ctx, ks.token, ks.previousID); err != nil {
		return r.failed(out, "revoking the previous key "+ks.previousID+" (revoke it by hand: DELETE /v1/api-keys/"+ks.previousID+")", c.Keys(), err)
	}
	if err := r.step(conn, StepRevoke); err != nil {
		return err
	}
	orig := sec.DeepCopy()
	setAnnotation(sec, kf.AnnotationPreviousKeyID, "")
	if err := r.write(ctx, orig, sec); err != nil {
		return err
	}
	out.wrote = true
	r.mu.Lock()
	delete(r.revokeAfter, conn.GetUID())
	r.mu.Unlock()
	st := &out.status
	st.Phase, st.PreviousKeyID, st.LastError, st.LastErrorReason = kf.RotationIdle, "", "", ""
	st.LastRotationTime = conditions.TimePtr(r.now())
	out.rotated = fmt.Sprintf("rotated the API key: %s replaces %s, which is revoked", ks.id, ks.previousID)
	return nil
}

// failed turns a provider error of a step into the rotation's outcome: 401 and 403 stop
// it (the key lacks the right to manage keys), anything else is retried when the
// provider allows.
func (r *rotator) failed(out *rotation, what string, keys *vault.KeyAPI, err error) error {
	ve, ok := vault.AsError(err)
	if !ok {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch ve.Reason {
	case vault.ReasonUnauthorized, vault.ReasonForbidden:
		out.stop = conditions.StalledErr(kf.ReasonForbidden, "%s was refused (%s): the current key keeps serving; rotation needs a key with %s", what, ve.Error(), keys.AdminScope)
	case vault.ReasonInvalidConfig, vault.ReasonNotAllowed:
		out.stop = conditions.StalledErr(conditions.ConditionReasonOf(ve.Reason).Reason, "%s: %s", what, ve.Error())
	default:
		out.status.LastError = what + ": " + ve.Error()
		out.retryAt = ve.RetryAt
		if out.retryAt.IsZero() {
			out.retryAt = r.now().Add(30 * time.Second)
		}
	}
	return nil
}

// step asks the crash hook (tests) whether the pass ends after step.
func (r *rotator) step(conn kf.Connection, step string) error {
	if r.crash == nil {
		return nil
	}
	return r.crash(conn, step)
}

// write patches the Secret from orig to s under orig's resourceVersion and remembers the
// write, so the next read does not trust a cache that has not seen it yet.
func (r *rotator) write(ctx context.Context, orig, s *corev1.Secret) error {
	if err := r.client.Patch(ctx, s, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("writing rotated key into Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	r.fresh.wrote(client.ObjectKeyFromObject(s), s.ResourceVersion)
	return nil
}

// currentKey finds the key the Secret holds in the account's list: by the id the Secret
// names, else (keyway) by the prefix the provider shows.
func currentKey(list []vault.APIKey, ks keyState, keys *vault.KeyAPI) (vault.APIKey, bool) {
	prefix := keys.Prefix(ks.token)
	for _, k := range list {
		if !k.Active {
			continue
		}
		if ks.id != "" && k.ID == ks.id {
			return k, true
		}
		if ks.id == "" && keys.IDFromList && prefix != "" && k.Prefix == prefix {
			return k, true
		}
	}
	return vault.APIKey{}, false
}

func setAnnotation(s *corev1.Secret, k, v string) {
	if v == "" {
		delete(s.Annotations, k)
		return
	}
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[k] = v
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
