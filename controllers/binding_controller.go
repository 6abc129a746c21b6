package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
	"github.com/keyferry/keyferry/internal/metrics"
	"github.com/keyferry/keyferry/internal/render"
	"github.com/keyferry/keyferry/internal/vault"
)

const (
	// connectionRefIndex indexes bindings by the connection they use ("Kind/name").
	connectionRefIndex = "spec.connectionRef"
	// Failures back off from backoffBase to backoffMax (never beyond the refresh interval).
	backoffBase = 5 * time.Second
	backoffMax  = 5 * time.Minute
	// notReadyRetry is how soon a binding looks again at a connection that is not usable.
	notReadyRetry = 3 * time.Second
	// clientPendingRetry is how soon it looks again at a connection still being set up.
	clientPendingRetry = time.Second
	// jitterFraction spreads refreshes over ±10% of the interval.
	jitterFraction = 0.1
)

// SecretBindingReconciler syncs SecretBindings into Secrets.
type SecretBindingReconciler struct {
	// Client reads keyferry objects and Namespaces from the cache and writes everything.
	Client client.Client
	// Secrets reads managed Secrets from the label-selected cache.
	Secrets client.Reader
	// APIReader reads live: only for a target Secret the cache does not know.
	APIReader client.Reader
	Registry  *vault.Registry
	Clock     clock.PassiveClock
	Recorder  events.EventRecorder
	// HMACKey keys the digest of written data (one per installation).
	HMACKey []byte
	// Wake asks a connection's reconciler to look again (a 401 or 403 was seen), by kind.
	Wake    map[kf.ConnectionKind]chan<- event.GenericEvent
	Workers int

	failures sync.Map // types.NamespacedName -> int: consecutive failed passes
}

// Reconcile handles one binding: fetch, defer the status patch, run the steps.
func (r *SecretBindingReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	b := &kf.SecretBinding{}
	if err := r.Client.Get(ctx, req.NamespacedName, b); err != nil {
		if apierrors.IsNotFound(err) {
			r.failures.Delete(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !b.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, b)
	}
	if err := r.ensureFinalizer(ctx, b); err != nil {
		return ctrl.Result{}, err
	}

	prev := *b.Status.DeepCopy()
	outcome, err := r.sync(ctx, b)
	if err != nil {
		return ctrl.Result{}, err // API server trouble: controller backoff
	}
	if !outcome.skipped {
		if outcome.err != nil {
			metrics.Sync(outcome.err.Reason)
		} else {
			metrics.Sync(kf.ReasonSynced)
		}
	}
	next := computeBindingStatus(prev, outcome)
	if !equality.Semantic.DeepEqual(prev, next) {
		base := b.DeepCopy()
		b.Status = next
		if err := r.Client.Status().Patch(ctx, b, client.MergeFrom(base)); err != nil {
			return ctrl.Result{}, err
		}
		recordTransition(r.Recorder, b, readyOf(prev.Conditions), readyOf(next.Conditions))
	}
	return ctrl.Result{RequeueAfter: max(outcome.nextSync.Sub(outcome.now), time.Second)}, nil
}

// sync runs the steps of a pass. Failures about the binding come back in the outcome;
// only API server failures are returned.
func (r *SecretBindingReconciler) sync(ctx context.Context, b *kf.SecretBinding) (syncOutcome, error) {
	now := r.Clock.Now()
	o := syncOutcome{now: now, generation: b.Generation}
	interval := refreshInterval(b)
	key := types.NamespacedName{Namespace: b.Namespace, Name: b.Name}

	fail := func(err error) (syncOutcome, error) {
		ce, ok := asConditionError(err)
		if !ok {
			return o, err
		}
		n := 1
		if v, ok := r.failures.Load(key); ok {
			n = v.(int) + 1
		}
		r.failures.Store(key, n)
		o.err = ce
		o.nextSync = now.Add(min(backoffFor(n), interval))
		if ce.RetryAt.After(now) {
			// Come back when the provider allows, spread so waiters do not return at once.
			o.nextSync = ce.RetryAt.Add(time.Duration(rand.Int64N(int64(5 * time.Second))))
		}
		return o, nil
	}

	c, conn, err := r.connectionClient(ctx, b)
	if errors.Is(err, errClientPending) {
		// Right after a start (or a new connection) its reconciler may not have built the
		// client yet. That takes a moment, so the binding waits quietly instead of writing
		// a transient status; the connection's first status change wakes it too.
		o.skipped, o.nextSync = true, now.Add(clientPendingRetry)
		return o, nil
	}
	if err != nil {
		if ce, ok := asConditionError(err); ok && ce.Reason == kf.ReasonConnectionNotReady {
			o.err, o.nextSync = ce, now.Add(notReadyRetry)
			return o, nil
		}
		return fail(err)
	}
	current, err := r.currentTarget(ctx, b)
	if err != nil {
		return fail(err)
	}

	refresh := b.Annotations[kf.AnnotationRefresh]
	refreshWanted := refresh != "" && refresh != b.Status.LastHandledRefresh
	if refreshWanted {
		o.refresh = refresh
	}
	if !refreshWanted && !r.due(b, current, now) {
		o.skipped = true
		o.nextSync = b.Status.NextSyncTime.Time
		return o, nil
	}

	maxAge := interval
	if refreshWanted {
		maxAge = 0
	}
	snap, err := c.Fetch(ctx, vaultTarget(b), maxAge)
	if err != nil {
		if reason := vault.ReasonOf(err); reason == vault.ReasonUnauthorized || reason == vault.ReasonForbidden {
			r.wakeConnection(conn)
		}
		return fail(err)
	}
	if conn.ready == nil || conn.ready.Status != metav1.ConditionTrue {
		// The connection's status should learn that its credentials work.
		r.wakeConnection(conn)
	}
	data, err := render.Data(snap.Data, renderSpec(b))
	if err != nil {
		var re *render.Error
		if errors.As(err, &re) && re.TooLarge {
			return fail(condErr(kf.ReasonTooLarge, "%s", re.Message))
		}
		return fail(condErr(kf.ReasonInvalidSpec, "%s", err.Error()))
	}
	wrote, err := r.write(ctx, b, current, data)
	if err != nil {
		return fail(err)
	}
	metrics.SecretWrite(wrote)
	r.failures.Delete(key)
	o.wrote, o.keys = wrote, int32(len(data))
	// The next refresh is due an interval after the data was fetched (shared snapshots
	// may be a little older than this pass).
	o.nextSync = snap.FetchedAt.Add(interval + jitter(time.Duration(float64(interval)*jitterFraction)))
	if !o.nextSync.After(now) {
		o.nextSync = now.Add(interval)
	}
	return o, nil
}

// errClientPending marks a connection whose provider client is not built yet.
var errClientPending = errors.New("connection client pending")

// connectionRef is the connection a binding resolved to.
type connectionRef struct {
	kind            kf.ConnectionKind
	namespace, name string
	ready           *metav1.Condition
}

// connectionClient resolves the binding's connection and returns its provider client.
func (r *SecretBindingReconciler) connectionClient(ctx context.Context, b *kf.SecretBinding) (*vault.Client, connectionRef, error) {
	ref := b.Spec.ConnectionRef
	kind := ref.Kind
	if kind == "" {
		kind = kf.ConnectionKindNamespaced
	}
	cr := connectionRef{kind: kind, namespace: b.Namespace, name: ref.Name}
	notReady := func(format string, args ...any) (*vault.Client, connectionRef, error) {
		return nil, cr, condErr(kf.ReasonConnectionNotReady, format, args...)
	}
	var conn connection
	switch kind {
	case kf.ConnectionKindCluster:
		cvc := &kf.ClusterVaultConnection{}
		if err := r.Client.Get(ctx, types.NamespacedName{Name: ref.Name}, cvc); err != nil {
			if apierrors.IsNotFound(err) {
				return notReady("ClusterVaultConnection %s not found", ref.Name)
			}
			return nil, cr, err
		}
		allowed, err := r.namespaceAllowed(ctx, cvc, b.Namespace)
		if err != nil {
			return nil, cr, err
		}
		if !allowed {
			return notReady("ClusterVaultConnection %s does not allow namespace %s (namespaceSelector)", ref.Name, b.Namespace)
		}
		conn = clusterConn{cvc}
	default:
		vc := &kf.VaultConnection{}
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: ref.Name}, vc); err != nil {
			if apierrors.IsNotFound(err) {
				return notReady("VaultConnection %s not found in namespace %s", ref.Name, b.Namespace)
			}
			return nil, cr, err
		}
		conn = namespacedConn{vc}
	}
	if !conn.GetDeletionTimestamp().IsZero() {
		return notReady("%s %s is being deleted", kind, ref.Name)
	}
	cr.ready = readyOf(conn.connStatus().Conditions)
	if ready := cr.ready; ready != nil {
		switch ready.Reason {
		case kf.ReasonCredentialsNotFound, kf.ReasonInvalidSpec:
			return notReady("%s %s: %s: %s", kind, ref.Name, ready.Reason, ready.Message)
		}
	}
	c, ok := r.Registry.Get(connectionID(kind, b.Namespace, ref.Name))
	if !ok {
		_, cr, err := notReady("%s %s is not set up yet", kind, ref.Name)
		return nil, cr, errors.Join(errClientPending, err)
	}
	return c, cr, nil
}

func (r *SecretBindingReconciler) namespaceAllowed(ctx context.Context, cvc *kf.ClusterVaultConnection, namespace string) (bool, error) {
	if cvc.Spec.NamespaceSelector == nil {
		return false, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(cvc.Spec.NamespaceSelector)
	if err != nil {
		return false, nil
	}
	ns := &corev1.Namespace{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: namespace}, ns); err != nil {
		return false, err
	}
	return sel.Matches(labels.Set(ns.Labels)), nil
}

func (r *SecretBindingReconciler) wakeConnection(cr connectionRef) {
	kind, namespace, name := cr.kind, cr.namespace, cr.name
	ch := r.Wake[kind]
	if ch == nil {
		return
	}
	var obj client.Object = &kf.VaultConnection{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if kind == kf.ConnectionKindCluster {
		obj = &kf.ClusterVaultConnection{ObjectMeta: metav1.ObjectMeta{Name: name}}
	}
	select {
	case ch <- event.GenericEvent{Object: obj}:
	default: // a wake-up is already queued
	}
}

func targetName(b *kf.SecretBinding) string {
	if b.Spec.Target.Name != "" {
		return b.Spec.Target.Name
	}
	return b.Name
}

func policyOf(b *kf.SecretBinding) kf.CreationPolicy {
	if b.Spec.Target.CreationPolicy == "" {
		return kf.CreationPolicyOwner
	}
	return b.Spec.Target.CreationPolicy
}

// bindingLabel is the binding's name as a label value (at most 63 characters).
func bindingLabel(name string) string {
	if len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:50] + "-" + hex.EncodeToString(sum[:])[:12]
}

// currentTarget returns the target Secret, or nil if it does not exist. Secrets keyferry
// manages come from the cache; a live read happens only for one it does not know, which
// is then a conflict unless the binding merges into it.
func (r *SecretBindingReconciler) currentTarget(ctx context.Context, b *kf.SecretBinding) (*corev1.Secret, error) {
	key := types.NamespacedName{Namespace: b.Namespace, Name: targetName(b)}
	s := &corev1.Secret{}
	err := r.Secrets.Get(ctx, key, s)
	if apierrors.IsNotFound(err) && policyOf(b) != kf.CreationPolicyMerge {
		// Not managed (or not there): the write creates it, and a create fails on any
		// Secret that exists, so nobody's Secret is overwritten.
		return nil, nil
	}
	if apierrors.IsNotFound(err) {
		err = r.APIReader.Get(ctx, key, s)
		if apierrors.IsNotFound(err) {
			if policyOf(b) == kf.CreationPolicyMerge {
				return nil, condErr(kf.ReasonTargetConflict, "Secret %s does not exist; creationPolicy Merge writes into an existing Secret", key.Name)
			}
			return nil, nil
		}
	}
	if err != nil {
		return nil, err
	}
	owner := s.Annotations[kf.AnnotationBinding]
	mine := s.Labels[kf.LabelBinding] == bindingLabel(b.Name) && (owner == "" || owner == b.Name)
	switch {
	case policyOf(b) == kf.CreationPolicyMerge && (mine || s.Labels[kf.LabelBinding] == ""):
		return s, nil
	case policyOf(b) == kf.CreationPolicyMerge:
		return nil, condErr(kf.ReasonTargetConflict, "Secret %s is already written by binding %s", key.Name, owner)
	case !mine:
		return nil, condErr(kf.ReasonTargetConflict, "Secret %s exists and is not managed by this binding; delete it, pick another target.name, or use creationPolicy Merge", key.Name)
	}
	return s, nil
}

// due says whether the vault must be read: a new generation, the planned refresh time, or
// a target Secret that is missing or no longer holds what keyferry wrote (drift).
func (r *SecretBindingReconciler) due(b *kf.SecretBinding, current *corev1.Secret, now time.Time) bool {
	st := b.Status
	if st.ObservedGeneration != b.Generation || st.NextSyncTime == nil || !now.Before(st.NextSyncTime.Time) {
		return true
	}
	if ready := readyOf(st.Conditions); ready == nil || ready.Status != metav1.ConditionTrue {
		return true
	}
	return current == nil || r.drifted(b, current)
}

// writtenData is the part of a Secret that keyferry wrote, with the type it counts in the
// digest ("" under Merge, where the type is not ours).
func writtenData(b *kf.SecretBinding, s *corev1.Secret) (string, map[string][]byte) {
	if policyOf(b) == kf.CreationPolicyMerge {
		var keys []string
		if v := s.Annotations[kf.AnnotationKeys]; v != "" {
			keys = strings.Split(v, ",")
		}
		return "", render.Subset(s.Data, keys)
	}
	return string(s.Type), s.Data
}

func (r *SecretBindingReconciler) drifted(b *kf.SecretBinding, s *corev1.Secret) bool {
	want := s.Annotations[kf.AnnotationDataHMAC]
	typ, data := writtenData(b, s)
	return want == "" || render.Digest(r.HMACKey, typ, data) != want
}

// write applies the rendered data unless the Secret already holds exactly it.
func (r *SecretBindingReconciler) write(ctx context.Context, b *kf.SecretBinding, current *corev1.Secret, data map[string][]byte) (bool, error) {
	policy := policyOf(b)
	typ := string(secretType(b))
	digestType := typ
	if policy == kf.CreationPolicyMerge {
		digestType = ""
	}
	digest := render.Digest(r.HMACKey, digestType, data)
	if current != nil && current.Annotations[kf.AnnotationDataHMAC] == digest && !r.drifted(b, current) &&
		templateMetaPresent(b, current) && (policy == kf.CreationPolicyMerge || string(current.Type) == typ) {
		return false, nil
	}
	lbls := map[string]string{kf.LabelBinding: bindingLabel(b.Name)}
	annos := map[string]string{kf.AnnotationDataHMAC: digest, kf.AnnotationBinding: b.Name}
	if t := b.Spec.Target.Template; t != nil {
		for k, v := range t.Labels {
			lbls[k] = v
		}
		for k, v := range t.Annotations {
			annos[k] = v
		}
	}
	ac := corev1ac.Secret(targetName(b), b.Namespace).WithData(data)
	switch policy {
	case kf.CreationPolicyMerge:
		annos[kf.AnnotationKeys] = strings.Join(render.Keys(data), ",")
	case kf.CreationPolicyOwner:
		lbls[kf.LabelManagedBy] = kf.LabelManagedByValue
		ac.WithType(secretType(b)).WithOwnerReferences(metav1ac.OwnerReference().
			WithAPIVersion(kf.GroupVersion.String()).WithKind("SecretBinding").
			WithName(b.Name).WithUID(b.UID).WithController(true).WithBlockOwnerDeletion(true))
	default:
		lbls[kf.LabelManagedBy] = kf.LabelManagedByValue
		ac.WithType(secretType(b))
	}
	ac.WithLabels(lbls).WithAnnotations(annos)
	if current == nil {
		// A create can never overwrite a Secret that appeared meanwhile (it fails instead),
		// and it spares the live read an apply would need to be safe.
		return r.create(ctx, b, ac)
	}
	if err := r.Client.Apply(ctx, ac, client.FieldOwner(kf.FieldManager), client.ForceOwnership); err != nil {
		if apierrors.IsInvalid(err) {
			return false, condErr(kf.ReasonTargetConflict, "the API server refused Secret %s: %s", targetName(b), apiMessage(err))
		}
		return false, err
	}
	return true, r.removeForeignKeys(ctx, b, current, data)
}

// create writes a new target Secret from its apply configuration. Keys a later pass no
// longer writes are removed by removeForeignKeys, so the Create's field ownership never
// keeps stale data.
func (r *SecretBindingReconciler) create(ctx context.Context, b *kf.SecretBinding, ac *corev1ac.SecretApplyConfiguration) (bool, error) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: *ac.Name, Namespace: *ac.Namespace,
		Labels: ac.Labels, Annotations: ac.Annotations}, Data: ac.Data}
	if ac.Type != nil {
		s.Type = *ac.Type
	}
	for _, ref := range ac.OwnerReferences {
		s.OwnerReferences = append(s.OwnerReferences, metav1.OwnerReference{APIVersion: *ref.APIVersion, Kind: *ref.Kind,
			Name: *ref.Name, UID: *ref.UID, Controller: ref.Controller, BlockOwnerDeletion: ref.BlockOwnerDeletion})
	}
	err := r.Client.Create(ctx, s, client.FieldOwner(kf.FieldManager))
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsAlreadyExists(err):
		return false, condErr(kf.ReasonTargetConflict, "Secret %s exists and is not managed by this binding; delete it, pick another target.name, or use creationPolicy Merge", targetName(b))
	case apierrors.IsInvalid(err):
		return false, condErr(kf.ReasonTargetConflict, "the API server refused Secret %s: %s", targetName(b), apiMessage(err))
	default:
		return false, err
	}
}

// removeForeignKeys deletes keys added by hand to a Secret keyferry owns: apply leaves
// fields of other managers alone, but the Secret must hold exactly the vault's data.
func (r *SecretBindingReconciler) removeForeignKeys(ctx context.Context, b *kf.SecretBinding, current *corev1.Secret, data map[string][]byte) error {
	if current == nil || policyOf(b) == kf.CreationPolicyMerge {
		return nil
	}
	drop := map[string]any{}
	for k := range current.Data {
		if _, ok := data[k]; !ok {
			drop[k] = nil
		}
	}
	if len(drop) == 0 {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"data": drop})
	if err != nil {
		return err
	}
	return client.IgnoreNotFound(r.Client.Patch(ctx, current, client.RawPatch(types.MergePatchType, patch), client.FieldOwner(kf.FieldManager)))
}

// apiMessage returns the API server's own message; Secret validation never echoes values.
func apiMessage(err error) string {
	if se, ok := err.(apierrors.APIStatus); ok {
		return se.Status().Message
	}
	return err.Error()
}

func templateMetaPresent(b *kf.SecretBinding, s *corev1.Secret) bool {
	t := b.Spec.Target.Template
	if t == nil {
		return true
	}
	for k, v := range t.Labels {
		if s.Labels[k] != v {
			return false
		}
	}
	for k, v := range t.Annotations {
		if s.Annotations[k] != v {
			return false
		}
	}
	return true
}

func secretType(b *kf.SecretBinding) corev1.SecretType {
	if b.Spec.Target.Type == "" {
		return corev1.SecretTypeOpaque
	}
	return b.Spec.Target.Type
}

func refreshInterval(b *kf.SecretBinding) time.Duration {
	if b.Spec.RefreshInterval == nil || b.Spec.RefreshInterval.Duration < 10*time.Second {
		return time.Hour
	}
	return b.Spec.RefreshInterval.Duration
}

func vaultTarget(b *kf.SecretBinding) vault.Target {
	t := vault.Target{Vault: b.Spec.Vault, Environment: b.Spec.Environment}
	if rq := b.Spec.Request; rq != nil {
		t.Request = &vault.PullRequest{Method: rq.Method, Path: rq.Path, Body: rq.Body,
			Format: vault.Format(rq.Format), DataPath: rq.DataPath}
	}
	return t
}

func renderSpec(b *kf.SecretBinding) render.Spec {
	s := render.Spec{}
	if k := b.Spec.Keys; k != nil {
		s.Include, s.Exclude = k.Include, k.Exclude
	}
	if len(b.Spec.Rename) > 0 {
		s.Rename = make(map[string]string, len(b.Spec.Rename))
		for k, v := range b.Spec.Rename {
			s.Rename[k] = string(v)
		}
	}
	if t := b.Spec.Target.Template; t != nil {
		s.Template = t.Data
	}
	return s
}

func backoffFor(failures int) time.Duration {
	d := backoffBase
	for i := 1; i < failures && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// jitter returns a random duration in [-d, d].
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(2*d))) - d
}

// ensureFinalizer keeps a finalizer exactly on Merge bindings, which must remove their
// keys from a Secret they do not own when deleted.
func (r *SecretBindingReconciler) ensureFinalizer(ctx context.Context, b *kf.SecretBinding) error {
	want := policyOf(b) == kf.CreationPolicyMerge
	if want == controllerutil.ContainsFinalizer(b, kf.FinalizerMergeCleanup) {
		return nil
	}
	base := b.DeepCopy()
	if want {
		controllerutil.AddFinalizer(b, kf.FinalizerMergeCleanup)
	} else {
		controllerutil.RemoveFinalizer(b, kf.FinalizerMergeCleanup)
	}
	return r.Client.Patch(ctx, b, client.MergeFrom(base))
}

// finalize removes a Merge binding's keys (its field manager applies nothing, so the
// fields it alone owned go) and then the finalizer. Owner Secrets go with the binding
// through garbage collection; Orphan Secrets stay.
func (r *SecretBindingReconciler) finalize(ctx context.Context, b *kf.SecretBinding) error {
	if !controllerutil.ContainsFinalizer(b, kf.FinalizerMergeCleanup) {
		return nil
	}
	s := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: targetName(b)}, s)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return err
	case s.Labels[kf.LabelBinding] == bindingLabel(b.Name):
		if err := r.Client.Apply(ctx, corev1ac.Secret(s.Name, s.Namespace), client.FieldOwner(kf.FieldManager), client.ForceOwnership); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	base := b.DeepCopy()
	controllerutil.RemoveFinalizer(b, kf.FinalizerMergeCleanup)
	return client.IgnoreNotFound(r.Client.Patch(ctx, b, client.MergeFrom(base)))
}

// SetupWithManager registers the reconciler, its index and its watches: bindings, the
// managed Secrets (drift), and connections whose readiness changes.
func (r *SecretBindingReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &kf.SecretBinding{}, connectionRefIndex,
		func(o client.Object) []string {
			b := o.(*kf.SecretBinding)
			kind := b.Spec.ConnectionRef.Kind
			if kind == "" {
				kind = kf.ConnectionKindNamespaced
			}
			return []string{string(kind) + "/" + b.Spec.ConnectionRef.Name}
		}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("secretbinding").
		For(&kf.SecretBinding{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, deletionPredicate()))).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(secretToBinding)).
		Watches(&kf.VaultConnection{}, handler.EnqueueRequestsFromMapFunc(r.connectionToBindings(kf.ConnectionKindNamespaced)),
			builder.WithPredicates(readinessChanged())).
		Watches(&kf.ClusterVaultConnection{}, handler.EnqueueRequestsFromMapFunc(r.connectionToBindings(kf.ConnectionKindCluster)),
			builder.WithPredicates(readinessChanged())).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.Workers, 1)}).
		Complete(r)
}

// secretToBinding maps a managed Secret to the binding that writes it.
func secretToBinding(_ context.Context, o client.Object) []ctrl.Request {
	name := o.GetAnnotations()[kf.AnnotationBinding]
	if name == "" {
		name = o.GetLabels()[kf.LabelBinding]
	}
	if name == "" {
		return nil
	}
	return []ctrl.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
}

func (r *SecretBindingReconciler) connectionToBindings(kind kf.ConnectionKind) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []ctrl.Request {
		list := &kf.SecretBindingList{}
		opts := []client.ListOption{client.MatchingFields{connectionRefIndex: string(kind) + "/" + o.GetName()}}
		if kind == kf.ConnectionKindNamespaced {
			opts = append(opts, client.InNamespace(o.GetNamespace()))
		}
		if err := r.Client.List(ctx, list, opts...); err != nil {
			return nil
		}
		reqs := make([]ctrl.Request, 0, len(list.Items))
		for i := range list.Items {
			reqs = append(reqs, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
		return reqs
	}
}

// readinessChanged passes connection updates that change its Ready status or reason, and
// deletions.
func readinessChanged() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return true },
		DeleteFunc: func(event.DeleteEvent) bool { return true },
		UpdateFunc: func(e event.UpdateEvent) bool {
			if !e.ObjectNew.GetDeletionTimestamp().IsZero() {
				return true
			}
			return readyKey(e.ObjectOld) != readyKey(e.ObjectNew)
		},
	}
}

func readyKey(o client.Object) string {
	var conds []metav1.Condition
	switch c := o.(type) {
	case *kf.VaultConnection:
		conds = c.Status.Conditions
	case *kf.ClusterVaultConnection:
		conds = c.Status.Conditions
	}
	if r := readyOf(conds); r != nil {
		return string(r.Status) + "/" + r.Reason
	}
	return ""
}
