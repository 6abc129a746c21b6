// Package push is the SecretPush reconciler: it publishes keys of a Kubernetes Secret into
// a vault environment, one key per request and only the keys whose value differs, never
// over a key someone else changed since keyferry pushed it. Pushes run in the background
// (no reconcile worker waits for a vault) through the connection's shared client, budget
// and Retry-After gate.
package push

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyferry/keyferry/controllers/conditions"
	"github.com/keyferry/keyferry/controllers/queue"
	"github.com/keyferry/keyferry/controllers/resolve"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/steps"
	"github.com/keyferry/keyferry/internal/render"
	"github.com/keyferry/keyferry/internal/vault"
)

// Reconciler pushes SecretPushes.
type Reconciler struct {
	// Client reads keyferry objects and Namespaces from the cache and writes.
	Client client.Client
	// Sources reads the Secrets labelled keyferry.dev/push=true (their own cache).
	Sources client.Reader
	// APIReader reads live: a source the cache does not hold, to tell a missing Secret
	// from one without the label.
	APIReader client.Reader
	Registry  *vault.Registry
	Clock     clock.PassiveClock
	Recorder  events.EventRecorder
	// HMACKey keys the digests of pushed values (one per installation).
	HMACKey []byte
	Workers int

	jobs   *jobs
	waker  queue.Waker
	mu     sync.Mutex
	checks map[types.NamespacedName]checkState
}

// checkState is what the last finished push of a SecretPush was for, and when the vault
// is due to be checked again.
type checkState struct {
	sig       string
	next      time.Time
	failures  int
	refreshed string
}

// Reconcile handles one SecretPush: fetch, run the pass, write status once.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	sp := &kf.SecretPush{}
	stage, err := steps.Fetch(ctx, r.Client, req.NamespacedName, sp)
	switch {
	case err != nil:
		return ctrl.Result{}, err
	case stage == steps.Gone:
		r.jobs.stop(req.NamespacedName)
		r.forget(req.NamespacedName)
		return ctrl.Result{}, nil
	case stage == steps.Deleting:
		return r.finalize(ctx, sp)
	case stage == steps.Suspended:
		r.jobs.stop(req.NamespacedName)
		ctrl.LoggerFrom(ctx).V(1).Info("suspended: not pushing")
		return ctrl.Result{}, nil
	}
	// deletionPolicy Delete removes the pushed keys before the SecretPush goes.
	if err := steps.EnsureFinalizer(ctx, r.Client, sp, kf.FinalizerPushCleanup, sp.Spec.DeletionPolicy == kf.DeletionPolicyDelete); err != nil {
		return ctrl.Result{}, err
	}
	now := r.Clock.Now()
	o, err := r.pass(ctx, sp, now)
	if err != nil {
		return ctrl.Result{}, err
	}
	switch {
	case o.held:
		// The connection is suspended: its resumption (a new generation) wakes the push.
		return ctrl.Result{}, nil
	case o.skipped:
		return ctrl.Result{RequeueAfter: max(r.state(req.NamespacedName).next.Sub(now), time.Second)}, nil
	}
	failures := r.observe(req.NamespacedName, o, now, sp.GetRefreshInterval())
	st := computeStatus(sp.Status, o, now)
	if err := steps.PatchStatus(ctx, steps.StatusPatcher{Client: r.Client, Recorder: r.Recorder}, sp, &sp.Status, st); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: requeueAfter(o, failures, sp.GetRefreshInterval(), rand.Float64(), now)}, nil
}

// pass runs the steps of one push. Failures about the SecretPush come back in the outcome;
// only API server failures are returned.
func (r *Reconciler) pass(ctx context.Context, sp *kf.SecretPush, now time.Time) (outcome, error) {
	key := client.ObjectKeyFromObject(sp)
	o := outcome{generation: sp.Generation}
	refresh := sp.Annotations[kf.AnnotationRefresh]
	if refresh != "" && refresh != sp.Status.LastHandledRefresh {
		o.refresh = refresh
	}
	c, conn, err := r.connection(ctx, sp)
	if o.pending, o.held = resolve.Held(err); o.pending || o.held {
		return o, nil
	}
	if err != nil {
		return failed(o, err)
	}
	job, err := r.plan(ctx, sp, c, conn)
	if err != nil {
		return failed(o, err)
	}
	sig := signature(sp, job)
	r.resume(key, sp, job, sig, now)
	if st := r.state(key); o.refresh == "" && st.sig == sig && now.Before(st.next) && conditions.IsReady(sp.Status.Conditions) &&
		sp.Status.ObservedGeneration == sp.Generation {
		// The vault was checked for exactly this, recently: nothing is due.
		o.skipped = true
		return o, nil
	}
	res, done := r.jobs.start(key, resolve.ConnectionIDOf(conn), sig, func(ctx context.Context) pushResult { return job.run(ctx, c) }, func() { r.waker.Wake(key) })
	if !done {
		o.running = true
		return o, nil
	}
	r.setSig(key, sig, refresh)
	o.result = &res
	return o, nil
}

// failed puts err in the outcome when it is about the SecretPush; other errors (API
// server trouble) are returned.
func failed(o outcome, err error) (outcome, error) {
	if ve, ok := vault.AsError(err); ok {
		o.err = conditions.FromVault(ve)
		return o, nil
	}
	ce, ok := conditions.AsConditionError(err)
	if !ok {
		return o, err
	}
	o.err = ce
	return o, nil
}

// plan reads the source, selects and renames its keys, checks them against the provider's
// rules (before any request) and returns the push to run.
func (r *Reconciler) plan(ctx context.Context, sp *kf.SecretPush, c *vault.Client, conn kf.Connection) (pushJob, error) {
	pt, read, err := targets(sp, conn)
	if err != nil {
		return pushJob{}, err
	}
	if err := c.CanPush(pt); err != nil {
		return pushJob{}, err
	}
	if sp.Spec.DeletionPolicy == kf.DeletionPolicyDelete {
		if err := c.CanDelete(pt); err != nil {
			return pushJob{}, err
		}
	}
	src, err := r.source(ctx, sp)
	if err != nil {
		return pushJob{}, err
	}
	values := make(map[string]string, len(src.Data))
	for k, v := range src.Data {
		values[k] = string(v)
	}
	spec := render.Spec{Rename: sp.Spec.Source.Rename}
	if k := sp.Spec.Source.Keys; k != nil {
		spec.Include, spec.Exclude = k.Include, k.Exclude
	}
	data, err := render.Data(values, spec)
	if err != nil {
		return pushJob{}, conditions.StalledErr(kf.ReasonInvalidSpec, "%s", strings.ReplaceAll(err.Error(), "Secret key", "key"))
	}
	want := make(map[string]string, len(data))
	var refused []string
	for _, k := range slices.Sorted(maps.Keys(data)) {
		if err := c.CheckKey(pt, k, len(data[k])); err != nil {
			refused = append(refused, err.Error())
		}
		want[k] = string(data[k])
	}
	if len(refused) > 0 {
		return pushJob{}, conditions.StalledErr(kf.ReasonInvalidSpec, "%s refuses: %s", conn.ConnectionSpec().Provider, strings.Join(refused, "; "))
	}
	return pushJob{read: read, target: pt, want: want, pushed: pushedMap(sp.Status.Pushed),
		p: policies{update: sp.GetUpdatePolicy(), conflict: sp.Spec.ConflictPolicy}, digest: newDigester(r.HMACKey)}, nil
}

// targets are where the push writes and how it reads the environment first.
func targets(sp *kf.SecretPush, conn kf.Connection) (vault.PushTarget, vault.Target, error) {
	spec := conn.ConnectionSpec()
	pt := vault.PushTarget{Vault: sp.Spec.Vault, Environment: sp.Spec.Environment}
	read := vault.Target{Vault: sp.Spec.Vault, Environment: sp.Spec.Environment, Request: resolve.PullRequest(spec.Request)}
	if p := spec.Push; p != nil {
		pt.Request = &vault.PushRequest{Method: p.Method, Path: p.Path, Body: p.Body}
	}
	if spec.Provider == kf.ProviderHTTP && pt.Request != nil && read.Request == nil {
		return pt, read, conditions.StalledErr(kf.ReasonInvalidSpec, "%s %s has a push request but no spec.request: keyferry reads the environment before writing, to write only what differs",
			conn.ConnectionKind(), conn.GetName())
	}
	return pt, read, nil
}

// signature identifies what a push is for: the generation, the values wanted (by keyed
// digest) and the refresh asked for. (What was pushed before changes only through the
// push's own result, which must not make the push due again.)
func signature(sp *kf.SecretPush, j pushJob) string {
	h := sha256.New()
	_, _ = fmt.Fprintf(h, "%d\x00%s\x00", sp.Generation, sp.Annotations[kf.AnnotationRefresh])
	for _, k := range slices.Sorted(maps.Keys(j.want)) {
		_, _ = fmt.Fprintf(h, "%s=%s\x00", k, j.digest(k, j.want[k]))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// source returns the Secret to push; it must carry the push label.
func (r *Reconciler) source(ctx context.Context, sp *kf.SecretPush) (*corev1.Secret, error) {
	key := types.NamespacedName{Namespace: sp.Namespace, Name: sp.Spec.Source.Name}
	s := &corev1.Secret{}
	err := r.Sources.Get(ctx, key, s)
	if apierrors.IsNotFound(err) {
		// Not in the labelled cache: missing, or not labelled (read once, to say which).
		err = r.APIReader.Get(ctx, key, s)
		if apierrors.IsNotFound(err) {
			return nil, conditions.StalledErr(kf.ReasonSourceNotFound, "Secret %s not found in namespace %s", key.Name, key.Namespace)
		}
		if err == nil && s.Labels[kf.LabelPush] != "true" {
			return nil, conditions.StalledErr(kf.ReasonNotAllowed, "Secret %s does not carry the label %s=\"true\": keyferry pushes only Secrets that opt in", key.Name, kf.LabelPush)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s: %w", key, err)
	}
	return s, nil
}

// connection resolves the SecretPush's connection by the rule every kind shares
// (resolve.Connection: a ClusterVaultConnection lends itself for pushes only with
// allowPush, for the vaults and environments it allows) and returns its client.
func (r *Reconciler) connection(ctx context.Context, sp *kf.SecretPush) (*vault.Client, kf.Connection, error) {
	return resolve.Connection(ctx, r.Client, r.Registry, sp.Spec.ConnectionRef, pushUse(sp))
}

// pushUse is what a SecretPush asks of its connection: to write its vault environment.
func pushUse(sp *kf.SecretPush) resolve.Use {
	return resolve.Use{Namespace: sp.Namespace, Push: true, Reads: []resolve.Read{{Vault: sp.Spec.Vault, Environment: sp.Spec.Environment}}}
}

func (r *Reconciler) state(key types.NamespacedName) checkState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.checks[key]
}

// setSig records what the finished push was for.
func (r *Reconciler) setSig(key types.NamespacedName, sig, refresh string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.checks[key]
	st.sig, st.refreshed = sig, refresh
	r.checks[key] = st
}

// observe counts consecutive failures and plans the next check of the vault; it returns
// the failures.
func (r *Reconciler) observe(key types.NamespacedName, o outcome, now time.Time, interval time.Duration) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.checks[key]
	switch fail := o.failure(); {
	case !o.acted():
	case fail == nil || fail.Reason == kf.ReasonConflict:
		st.failures = 0
		st.next = now.Add(interval)
	default:
		st.failures++
		st.next = time.Time{}
	}
	r.checks[key] = st
	return st.failures
}

// resume lets a push the manager knows nothing of yet (it restarted: an upgrade, a
// failover) trust its status when that says the vault holds what the Secret holds now,
// for this generation: the next check of the vault is then spread over the second half
// of the interval rather than due at once, so a restart costs the provider no request.
func (r *Reconciler) resume(key types.NamespacedName, sp *kf.SecretPush, job pushJob, sig string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// A state without a signature is a pass that ended before planning (the connection's
	// client not built yet, right after a start): still unknown.
	if st, known := r.checks[key]; known && st.sig != "" || sp.Annotations[kf.AnnotationRefresh] != sp.Status.LastHandledRefresh ||
		!conditions.IsReady(sp.Status.Conditions) || sp.Status.ObservedGeneration != sp.Generation || !job.holdsPushed() {
		return
	}
	r.checks[key] = checkState{sig: sig, refreshed: sp.Status.LastHandledRefresh,
		next: now.Add(time.Duration((0.5 + 0.5*rand.Float64()) * float64(sp.GetRefreshInterval())))}
}

func (r *Reconciler) forget(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.checks, key)
}
