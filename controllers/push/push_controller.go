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
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/keyferry/keyferry/controllers/common"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
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
	waker  common.Waker
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
	if err := r.Client.Get(ctx, req.NamespacedName, sp); err != nil {
		if apierrors.IsNotFound(err) {
			r.jobs.stop(req.NamespacedName)
			r.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !sp.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, sp)
	}
	if sp.Spec.Suspend {
		r.jobs.stop(req.NamespacedName)
		ctrl.LoggerFrom(ctx).V(1).Info("suspended: not pushing")
		return ctrl.Result{}, nil
	}
	if err := r.ensureFinalizer(ctx, sp); err != nil {
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
	if err := r.patchStatus(ctx, sp, st); err != nil {
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
	switch {
	case errors.Is(err, common.ErrClientPending):
		o.pending = true
		return o, nil
	case errors.Is(err, common.ErrConnectionSuspended):
		o.held = true
		return o, nil
	case err != nil:
		return failed(o, err)
	}
	job, err := r.plan(ctx, sp, c, conn)
	if err != nil {
		return failed(o, err)
	}
	sig := signature(sp, job)
	if st := r.state(key); o.refresh == "" && st.sig == sig && now.Before(st.next) && common.IsReady(sp.Status.Conditions) &&
		sp.Status.ObservedGeneration == sp.Generation {
		// The vault was checked for exactly this, recently: nothing is due.
		o.skipped = true
		return o, nil
	}
	res, done := r.jobs.start(key, common.ConnectionIDOf(conn), sig, func(ctx context.Context) pushResult { return job.run(ctx, c) }, func() { r.waker.Wake(key) })
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
		o.err = common.FromVault(ve)
		return o, nil
	}
	ce, ok := common.AsConditionError(err)
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
		return pushJob{}, common.StalledErr(kf.ReasonInvalidSpec, "%s", strings.ReplaceAll(err.Error(), "Secret key", "key"))
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
		return pushJob{}, common.StalledErr(kf.ReasonInvalidSpec, "%s refuses: %s", conn.ConnectionSpec().Provider, strings.Join(refused, "; "))
	}
	return pushJob{read: read, target: pt, want: want, pushed: pushedMap(sp.Status.Pushed),
		p: policies{update: sp.GetUpdatePolicy(), conflict: sp.Spec.ConflictPolicy}, digest: newDigester(r.HMACKey)}, nil
}

// targets are where the push writes and how it reads the environment first.
func targets(sp *kf.SecretPush, conn kf.Connection) (vault.PushTarget, vault.Target, error) {
	spec := conn.ConnectionSpec()
	pt := vault.PushTarget{Vault: sp.Spec.Vault, Environment: sp.Spec.Environment}
	read := vault.Target{Vault: sp.Spec.Vault, Environment: sp.Spec.Environment, Request: common.PullRequest(spec.Request)}
	if p := spec.Push; p != nil {
		pt.Request = &vault.PushRequest{Method: p.Method, Path: p.Path, Body: p.Body}
	}
	if spec.Provider == kf.ProviderHTTP && pt.Request != nil && read.Request == nil {
		return pt, read, common.StalledErr(kf.ReasonInvalidSpec, "%s %s has a push request but no spec.request: keyferry reads the environment before writing, to write only what differs",
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
			return nil, common.StalledErr(kf.ReasonSourceNotFound, "Secret %s not found in namespace %s", key.Name, key.Namespace)
		}
		if err == nil && s.Labels[kf.LabelPush] != "true" {
			return nil, common.StalledErr(kf.ReasonNotAllowed, "Secret %s does not carry the label %s=\"true\": keyferry pushes only Secrets that opt in", key.Name, kf.LabelPush)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s: %w", key, err)
	}
	return s, nil
}

// connection resolves the SecretPush's connection and returns its client. A
// ClusterVaultConnection lends itself for pushes only with allowPush, for the vaults and
// environments it allows.
func (r *Reconciler) connection(ctx context.Context, sp *kf.SecretPush) (*vault.Client, kf.Connection, error) {
	return common.ResolveConnection(ctx, r.Client, r.Registry, sp.Spec.ConnectionRef, sp.Namespace, func(cvc *kf.ClusterVaultConnection) error {
		switch {
		case !cvc.Spec.AllowPush:
			return common.StalledErr(kf.ReasonNotAllowed, "ClusterVaultConnection %s does not lend itself for pushes (allowPush)", cvc.Name)
		case !common.GlobsAllow(cvc.Spec.AllowedVaults, sp.Spec.Vault, sp.Namespace):
			return common.StalledErr(kf.ReasonNotAllowed, "ClusterVaultConnection %s does not lend vault %q to namespace %s (allowedVaults)", cvc.Name, sp.Spec.Vault, sp.Namespace)
		case !common.GlobsAllow(cvc.Spec.AllowedEnvironments, sp.Spec.Environment, sp.Namespace):
			return common.StalledErr(kf.ReasonNotAllowed, "ClusterVaultConnection %s does not lend environment %q to namespace %s (allowedEnvironments)", cvc.Name, sp.Spec.Environment, sp.Namespace)
		}
		return nil
	})
}

// ensureFinalizer keeps a finalizer exactly on SecretPushes with deletionPolicy Delete.
func (r *Reconciler) ensureFinalizer(ctx context.Context, sp *kf.SecretPush) error {
	want := sp.Spec.DeletionPolicy == kf.DeletionPolicyDelete
	if want == controllerutil.ContainsFinalizer(sp, kf.FinalizerPushCleanup) {
		return nil
	}
	base := sp.DeepCopy()
	if want {
		controllerutil.AddFinalizer(sp, kf.FinalizerPushCleanup)
	} else {
		controllerutil.RemoveFinalizer(sp, kf.FinalizerPushCleanup)
	}
	return r.Client.Patch(ctx, sp, client.MergeFrom(base))
}

func (r *Reconciler) patchStatus(ctx context.Context, sp *kf.SecretPush, next kf.SecretPushStatus) error {
	if equality.Semantic.DeepEqual(sp.Status, next) {
		return nil
	}
	prev := sp.Status
	base := sp.DeepCopy()
	sp.Status = next
	if err := r.Client.Status().Patch(ctx, sp, client.MergeFrom(base)); err != nil {
		return err
	}
	common.RecordTransition(r.Recorder, sp, common.ReadyOf(prev.Conditions), common.ReadyOf(next.Conditions))
	return nil
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

func (r *Reconciler) forget(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.checks, key)
}
