// Package binding is the SecretBinding reconciler: it resolves the binding's connection,
// reads its environment through the connection's client (never waiting for a vault), writes
// the target Secret and computes status apart from the actions.
package binding

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/keyferry/keyferry/controllers/conditions"
	"github.com/keyferry/keyferry/controllers/queue"
	"github.com/keyferry/keyferry/controllers/resolve"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/go-logr/logr"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/consumers"
	"github.com/keyferry/keyferry/controllers/steps"
	"github.com/keyferry/keyferry/internal/metrics"
	"github.com/keyferry/keyferry/internal/render"
	"github.com/keyferry/keyferry/internal/vault"
)

// Reconciler syncs SecretBindings into Secrets.
type Reconciler struct {
	// Client reads keyferry objects and Namespaces from the cache and writes everything.
	Client client.Client
	// Secrets reads managed Secrets from the label-selected cache.
	Secrets client.Reader
	// APIReader reads live: only for a target Secret or template ConfigMap the cache does
	// not know.
	APIReader client.Reader
	// TemplateConfigMaps reads the ConfigMaps labelled keyferry.dev/template=true (their
	// own cache).
	TemplateConfigMaps client.Reader
	Registry           *vault.Registry
	Clock              clock.PassiveClock
	Recorder           events.EventRecorder
	// HMACKey keys the digest of written data (one per installation).
	HMACKey []byte
	// Wake asks a connection's reconciler to look again (a 401 or 403 was seen), by kind.
	Wake map[kf.ConnectionKind]chan<- event.GenericEvent
	// ClientReady names connections whose client was just built (see connection.Reconciler).
	ClientReady map[kf.ConnectionKind]<-chan event.GenericEvent
	Workers     int
	// Rand draws the schedule's jitter in [0,1); math/rand when nil.
	Rand func() float64

	target secretWriter
	memory passMemory
	waker  queue.Waker
}

// Reconcile handles one binding: fetch, run the pass, schedule, write status once.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	b := &kf.SecretBinding{}
	stage, err := steps.Fetch(ctx, r.Client, req.NamespacedName, b)
	switch {
	case err != nil:
		return ctrl.Result{}, err
	case stage == steps.Gone:
		withdraw(req.NamespacedName, r.memory.forget(req.NamespacedName)...)
		metrics.BindingReason(req.String(), "")
		return ctrl.Result{}, nil
	case stage == steps.Deleting:
		withdraw(req.NamespacedName, r.memory.stopWaiting(req.NamespacedName)...)
		return ctrl.Result{}, r.finalize(ctx, b)
	case stage == steps.Suspended:
		// Nothing is touched, status included; resuming bumps the generation, which makes
		// the binding due at once.
		withdraw(req.NamespacedName, r.memory.stopWaiting(req.NamespacedName)...)
		ctrl.LoggerFrom(ctx).V(1).Info("suspended: not syncing")
		return ctrl.Result{}, nil
	}
	// Merge bindings must remove their keys from a Secret they do not own when deleted.
	if err := steps.EnsureFinalizer(ctx, r.Client, b, kf.FinalizerMergeCleanup, b.GetCreationPolicy() == kf.CreationPolicyMerge); err != nil {
		return ctrl.Result{}, err
	}

	now := r.Clock.Now()
	o, err := r.pass(ctx, b, now)
	if !o.fetching {
		// Whatever fetch the binding waited for is no longer wanted (its spec changed,
		// or it was answered): nobody else waiting, it is canceled.
		withdraw(req.NamespacedName, r.memory.stopWaiting(req.NamespacedName)...)
	}
	if err != nil {
		return ctrl.Result{}, err // API server trouble: controller backoff
	}
	if o.held {
		// The connection is suspended: no request, no write; its resumption (a new
		// generation) wakes the binding.
		ctrl.LoggerFrom(ctx).V(1).Info("connection suspended: not syncing", "connection", b.Spec.ConnectionRef.Name)
		return ctrl.Result{}, nil
	}
	failures := r.memory.observe(req.NamespacedName, o)
	next := nextSync(o, failures, b.GetRefreshInterval(), now)
	logOutcome(ctrl.LoggerFrom(ctx), o, failures, next)
	recordMetrics(o)
	st := computeBindingStatus(b.Status, o, next, now)
	// What the workloads reading the Secret say (the workload reconciler writes them,
	// never this status).
	rep, err := consumers.Of(ctx, r.Client, b.Namespace, b.GetTargetName())
	if err != nil {
		return ctrl.Result{}, err
	}
	rep.Apply(&st)
	if ready := conditions.ReadyOf(st.Conditions); ready != nil {
		metrics.BindingReason(req.String(), ready.Reason)
	}
	if err := steps.PatchStatus(ctx, r.status(), b, &b.Status, st); err != nil {
		return ctrl.Result{}, err
	}
	r.memory.refreshDone(req.NamespacedName, o)
	if next.IsZero() {
		return ctrl.Result{}, nil // no scheduled refresh (refreshPolicy OnChange or CreatedOnce)
	}
	return ctrl.Result{RequeueAfter: max(next.Sub(now), time.Second)}, nil
}

// pass runs the steps of one sync. Failures about the binding come back in the outcome;
// only API server failures are returned.
func (r *Reconciler) pass(ctx context.Context, b *kf.SecretBinding, now time.Time) (syncOutcome, error) {
	key := client.ObjectKeyFromObject(b)
	o := syncOutcome{generation: b.Generation, policy: b.GetRefreshPolicy(), spread: r.draw()}
	want := vault.Want{MaxAge: b.GetRefreshInterval()}
	if v := b.Annotations[kf.AnnotationRefresh]; v != "" && v != b.Status.LastHandledRefresh && !r.memory.refreshHandled(key, v) {
		// Only the answer to a request sent after the refresh was asked for handles it.
		o.refresh = v
		asked := now
		if at, ok := kf.HookRefreshTime(v); ok && at.Before(now) {
			// A hook's round: any answer to a request sent after the round began will do,
			// so the bindings it marked share one pull.
			asked = at
		}
		want.NotBefore = r.memory.refreshAsked(key, v, asked)
	}
	srcs := sources(b) // once per pass: the lending rule and the fetches read the same
	c, conn, err := r.connectionClient(ctx, b, srcs)
	if o.pending, o.held = resolve.Held(err); o.pending || o.held {
		return o, nil
	}
	if err != nil {
		return o.failed(err)
	}
	current, err := r.target.current(ctx, b)
	if err != nil {
		return o.failed(err)
	}
	if o.policy == kf.RefreshPolicyCreatedOnce && current != nil && ownershipOf(b, current) == ownedByThis {
		// Written once: whatever changed (spec, vault, the Secret by hand), it stays.
		o.kept, o.keys = true, writtenKeys(b, current)
		return o, nil
	}
	tmpl, err := r.templates(ctx, b)
	if err != nil {
		return o.failed(err)
	}
	if o.refresh == "" && !r.due(b, current, tmpl, now) {
		o.skipped = true
		if b.Status.NextSyncTime != nil {
			o.planned = b.Status.NextSyncTime.Time
		}
		return o, nil
	}
	snaps, since, err := r.fetchAll(key, c, conn, srcs, want, now)
	if errors.Is(err, vault.ErrPending) {
		o.fetching, o.waitingSince = true, since
		o.requestTimeout = conn.conn.ConnectionSpec().RequestTimeout
		return o, nil
	}
	if err != nil {
		if reason := vault.ReasonOf(err); reason == vault.ReasonUnauthorized || reason == vault.ReasonForbidden {
			r.wakeConnection(conn)
		}
		return o.failed(err)
	}
	if !conn.ready {
		// The connection's status should learn that its credentials work.
		r.wakeConnection(conn)
	}
	in := make([]render.Source, len(srcs))
	for i, s := range srcs {
		in[i] = s.render
		in[i].Values = snaps[i].Data
		if i == 0 || snaps[i].FetchedAt.Before(o.fetchedAt) {
			o.fetchedAt = snaps[i].FetchedAt // the schedule follows the oldest data
		}
	}
	data, counts, err := render.Merge(in, tmpl.Templates)
	if err != nil {
		return o.failed(renderError(err))
	}
	typed, err := render.CheckType(string(b.GetSecretType()), data)
	if err != nil {
		return o.failed(typeError(err, tmpl))
	}
	wrote, err := r.target.write(ctx, b, current, data, tmpl.digest)
	if err != nil {
		return o.failed(err)
	}
	o.wrote, o.keys, o.certNotAfter = wrote, int32(len(data)), typed.CertificateNotAfter
	if len(b.Spec.Sources) > 0 {
		for i, s := range srcs {
			o.sources = append(o.sources, kf.SourceStatus{Vault: s.read.Vault, Environment: s.read.Environment, Keys: counts[i]})
		}
	}
	return o, nil
}

// fetchAll starts (or joins) the fetch of every source at once and returns their
// snapshots when all are at hand; vault.ErrPending (with since when the binding waits)
// while any is on its way; the first failure, naming its source when there are several.
func (r *Reconciler) fetchAll(key types.NamespacedName, c *vault.Client, conn resolvedConnection, srcs []bindingSource, want vault.Want, now time.Time) ([]vault.Snapshot, time.Time, error) {
	snaps := make([]vault.Snapshot, len(srcs))
	keep := make(map[string]bool, len(srcs))
	targets := make([]vault.Target, len(srcs))
	for i, s := range srcs {
		targets[i] = s.read.Target(conn.conn)
		keep[targets[i].Key()] = true
	}
	withdraw(key, r.memory.retain(key, keep)...)
	var since time.Time
	pending := false
	for i, t := range targets {
		snap, waiting, err := r.fetch(key, c, t, want, now)
		switch {
		case errors.Is(err, vault.ErrPending):
			pending = true
			if since.IsZero() || waiting.Before(since) {
				since = waiting
			}
		case err != nil:
			if len(srcs) > 1 {
				return nil, time.Time{}, sourceFailed(srcs[i].render.Name, err)
			}
			return nil, time.Time{}, err
		default:
			snaps[i] = snap
		}
	}
	if pending {
		return nil, since, vault.ErrPending
	}
	return snaps, time.Time{}, nil
}

// sourceFailed names the source in a failure's message, keeping its reason and pause.
func sourceFailed(name string, err error) error {
	ce, ok := conditions.AsConditionError(err)
	if !ok {
		return err
	}
	named := *ce
	named.Message = name + ": " + ce.Message
	return &named
}

// fetch returns the answer for t that want accepts: the one a background fetch handed
// to this binding, or one at hand in the client; else it starts (or joins) a fetch that
// wakes the binding when it ends, and returns vault.ErrPending with since when the
// binding waits for it. No worker waits for a vault.
func (r *Reconciler) fetch(key types.NamespacedName, c *vault.Client, t vault.Target, want vault.Want, now time.Time) (vault.Snapshot, time.Time, error) {
	tkey := t.Key()
	if res, ok := r.memory.take(key, c, tkey); ok && !res.SentAt.Before(want.NotBefore) {
		return res.Snapshot, time.Time{}, res.Err
	}
	old, since := r.memory.expect(key, awaited{client: c, target: t, key: tkey, since: now})
	withdraw(key, old)
	snap, err := c.Start(t, want, key.String(), func(res vault.Result) {
		if r.memory.deliver(key, c, tkey, res) {
			r.waker.Wake(key)
		}
	})
	return snap, since, err
}

// withdraw tells a's client that the binding no longer waits for its fetch.
func withdraw(key types.NamespacedName, as ...*awaited) {
	for _, a := range as {
		if a != nil {
			a.client.Withdraw(a.target, key.String())
		}
	}
}

// due says whether the vault must be read: a new generation, changed template ConfigMaps, the planned refresh time
// (refreshPolicy Periodic only), a binding not Ready, or a target Secret that is missing or
// no longer holds what keyferry wrote (drift).
func (r *Reconciler) due(b *kf.SecretBinding, current *corev1.Secret, tmpl templates, now time.Time) bool {
	st := b.Status
	if st.ObservedGeneration != b.Generation {
		return true
	}
	if current != nil && current.Annotations[kf.AnnotationTemplates] != tmpl.digest {
		// A template ConfigMap changed: render again from the data at hand (the client's
		// snapshot, no provider request while it is fresh).
		return true
	}
	if b.GetRefreshPolicy() == kf.RefreshPolicyPeriodic && (st.NextSyncTime == nil || !now.Before(st.NextSyncTime.Time)) {
		return true
	}
	return !conditions.IsReady(st.Conditions) || current == nil || drifted(current)
}

func (r *Reconciler) draw() float64 {
	if r.Rand != nil {
		return r.Rand()
	}
	return rand.Float64()
}

// status is the binding reconciler's status writer: the one writer of SecretBinding status.
func (r *Reconciler) status() steps.StatusPatcher {
	return steps.StatusPatcher{Client: r.Client, Recorder: r.Recorder}
}

func recordMetrics(o syncOutcome) {
	switch {
	case !o.acted():
	case o.err != nil:
		metrics.Sync(o.err.Reason)
	default:
		metrics.Sync(kf.ReasonSynced)
		metrics.SecretWrite(o.wrote)
	}
}

// logOutcome logs at V(1) what a person debugging a stuck binding needs: why nothing
// happened, what it waits for, what was written. Never a value: messages are condition
// messages, which carry none.
func logOutcome(log logr.Logger, o syncOutcome, failures int, next time.Time) {
	log = log.V(1)
	switch {
	case o.pending:
		log.Info("waiting for the connection's client to be built", "retry", next)
	case o.fetching:
		log.Info("waiting for the vault's answer (fetch in flight)")
	case o.skipped:
		log.Info("skipped: not due", "nextSync", next)
	case o.kept:
		log.Info("Secret exists: refreshPolicy CreatedOnce leaves it as written", "keys", o.keys)
	case o.err == nil && o.wrote:
		log.Info("wrote the Secret", "keys", o.keys, "nextSync", next)
	case o.err == nil:
		log.Info("Secret unchanged", "keys", o.keys, "nextSync", next)
	case o.err.Reason == kf.ReasonConnectionNotReady:
		log.Info("waiting for the connection", "message", o.err.Message, "retry", next)
	case o.err.Class == conditions.ClassWaiting:
		log.Info("paused", "reason", o.err.Reason, "until", o.err.RetryAt, "message", o.err.Message, "retry", next)
	default:
		log.Info("sync failed", "reason", o.err.Reason, "class", o.err.Class.String(), "failures", failures,
			"message", o.err.Message, "retry", next)
	}
}
