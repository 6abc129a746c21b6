// Package workload restarts the opted-in Deployments, StatefulSets and DaemonSets when
// data they consume of keyferry-managed Secrets changes.
package workload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/keyferry/keyferry/controllers/common"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
	"github.com/keyferry/keyferry/internal/metrics"
	"github.com/keyferry/keyferry/internal/rollout"
	"github.com/keyferry/keyferry/internal/trim"
)

// Kinds are the kinds keyferry restarts, as the metric and events name them.
var Kinds = []string{"Deployment", "StatefulSet", "DaemonSet"}

// newWorkload returns an empty workload of kind.
func newWorkload(kind string) client.Object {
	switch kind {
	case "StatefulSet":
		return &appsv1.StatefulSet{}
	case "DaemonSet":
		return &appsv1.DaemonSet{}
	}
	return &appsv1.Deployment{}
}

func newWorkloadList(kind string) client.ObjectList {
	switch kind {
	case "StatefulSet":
		return &appsv1.StatefulSetList{}
	case "DaemonSet":
		return &appsv1.DaemonSetList{}
	}
	return &appsv1.DeploymentList{}
}

func podTemplateOf(o client.Object) *corev1.PodTemplateSpec {
	switch w := o.(type) {
	case *appsv1.StatefulSet:
		return &w.Spec.Template
	case *appsv1.DaemonSet:
		return &w.Spec.Template
	case *appsv1.Deployment:
		return &w.Spec.Template
	}
	return nil
}

// Reconciler restarts the opted-in workloads of one kind (label
// keyferry.dev/restart-on-change: "true") when, and only when, the data they consume of
// keyferry-managed Secrets changes: once per debounce window, never on a first sync or an
// operator restart.
type Reconciler struct {
	// Client reads workloads (label-selected cache) and bindings, and writes patches.
	Client client.Client
	// Secrets reads managed Secrets from the label-selected cache.
	Secrets  client.Reader
	Clock    clock.PassiveClock
	Recorder events.EventRecorder
	HMACKey  []byte
	Kind     string
	// Debounce groups changes of several Secrets into one restart.
	Debounce time.Duration

	mu      sync.Mutex
	pending map[types.NamespacedName]time.Time // first seen change, per workload
}

// consumedState is what a workload reads of managed Secrets now.
type consumedState struct {
	perSecret map[string]string // Secret name -> short digest of what the workload reads
	digest    string            // over everything it reads
	bindings  map[string]bool   // bindings writing those Secrets
}

// Reconcile compares what the workload reads now with what it read when last (re)started.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	w := newWorkload(r.Kind)
	if err := r.Client.Get(ctx, req.NamespacedName, w); err != nil {
		r.settle(req.NamespacedName)
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if w.GetLabels()[kf.LabelRestartOnChange] != "true" || !w.GetDeletionTimestamp().IsZero() {
		return ctrl.Result{}, nil
	}
	state, err := r.consumed(ctx, w)
	if err != nil || len(state.perSecret) == 0 {
		return ctrl.Result{}, err // no managed Secret: not ours to restart
	}
	labelled, recorded := recordedConsumption(w)
	seen := byLabel(state.perSecret)
	log := ctrl.LoggerFrom(ctx).V(1)
	if !changed(recorded, seen) {
		r.settle(req.NamespacedName)
		if !maps.Equal(labelled, seen) {
			// A Secret seen for the first time (a new binding's first sync), or one no
			// longer read: record what is read now, no restart.
			log.Info("recording consumed Secrets", "secrets", len(state.perSecret))
			return ctrl.Result{}, r.patch(ctx, w, labelled, seen, "")
		}
		return ctrl.Result{}, r.updateBindings(ctx, w.GetNamespace(), state, false)
	}
	if held, err := r.suspended(ctx, w.GetNamespace(), state.bindings); err != nil || held != "" {
		if held != "" {
			// The binding's Secret changed while it is suspended (a hand edit): keyferry
			// restarts nothing for it; its resumption repairs the Secret or writes new
			// data, and that change brings the workload back here.
			log.Info("consumed data changed but binding is suspended: no restart", "binding", held)
		}
		return ctrl.Result{}, err
	}
	now := r.Clock.Now()
	if wait := r.firstSeen(req.NamespacedName, now).Add(r.Debounce).Sub(now); wait > 0 {
		log.Info("consumed data changed; restart after the debounce window", "in", wait)
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	r.settle(req.NamespacedName)
	if err := r.patch(ctx, w, labelled, seen, state.digest); err != nil {
		metrics.WorkloadRestart(r.Kind, false)
		return ctrl.Result{}, err
	}
	metrics.WorkloadRestart(r.Kind, true)
	log.Info("restarted: consumed data changed", "secrets", len(state.perSecret))
	msg := fmt.Sprintf("restarted: data it reads of Secret(s) %s changed", joinSorted(state.perSecret))
	if r.Recorder != nil {
		r.Recorder.Eventf(w, nil, corev1.EventTypeNormal, "Restarted", "Restart", "%s", msg)
	}
	return ctrl.Result{}, r.updateBindings(ctx, w.GetNamespace(), state, true)
}

// consumed reads the managed Secrets the workload's pod template consumes.
func (r *Reconciler) consumed(ctx context.Context, w client.Object) (consumedState, error) {
	st := consumedState{perSecret: map[string]string{}, bindings: map[string]bool{}}
	all := rollout.Consumed(&podTemplateOf(w).Spec)
	data := map[string]map[string][]byte{}
	for name, keys := range all {
		s := &corev1.Secret{}
		err := r.Secrets.Get(ctx, types.NamespacedName{Namespace: w.GetNamespace(), Name: name}, s)
		if apierrors.IsNotFound(err) {
			continue // not managed by keyferry (or not there): left alone
		}
		if err != nil {
			return st, err
		}
		if s.Labels[kf.LabelBinding] == "" {
			continue
		}
		data[name] = trim.Digests(s)
		one := map[string]*rollout.Keys{name: keys}
		st.perSecret[name] = rollout.Digest(r.HMACKey, one, data)[:16]
		if b := s.Annotations[kf.AnnotationBinding]; b != "" {
			st.bindings[b] = true
		}
	}
	for name := range all {
		if _, ok := data[name]; !ok {
			delete(all, name)
		}
	}
	st.digest = rollout.Digest(r.HMACKey, all, data)
	return st, nil
}

// changed says a Secret the workload read before now holds other data for it.
func changed(recorded, now map[string]string) bool {
	for name, d := range now {
		if old, ok := recorded[name]; ok && old != d {
			return true
		}
	}
	return false
}

// patch records what the workload reads (labels: from had to want) and, to restart it
// (restartFor not empty), sets the pod-template annotation to the digest of that data:
// the restart is idempotent, a function of the data. Recording alone changes neither the
// spec nor the annotations, so the generation stays (a Deployment's annotations count).
func (r *Reconciler) patch(ctx context.Context, w client.Object, had, want map[string]string, restartFor string) error {
	lbls := map[string]any{}
	for name := range had {
		if _, ok := want[name]; !ok {
			lbls[kf.LabelPrefixConsumed+name] = nil
		}
	}
	for name, d := range want {
		lbls[kf.LabelPrefixConsumed+name] = d
	}
	body := map[string]any{"metadata": map[string]any{"labels": lbls}}
	if restartFor != "" {
		body["spec"] = map[string]any{"template": map[string]any{"metadata": map[string]any{
			"annotations": map[string]string{kf.AnnotationRestartedFor: restartFor}}}}
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return client.IgnoreNotFound(r.Client.Patch(ctx, w, client.RawPatch(types.MergePatchType, raw), client.FieldOwner(kf.FieldManager)))
}

// suspended returns the name of a suspended binding among those writing the Secrets the
// workload reads, "" if none is.
func (r *Reconciler) suspended(ctx context.Context, namespace string, bindings map[string]bool) (string, error) {
	for name := range bindings {
		b := &kf.SecretBinding{}
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, b); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return "", err
		}
		if b.Spec.Suspend {
			return name, nil
		}
	}
	return "", nil
}

// updateBindings keeps each binding's consumer count (and, after a restart, its
// lastRestartTime) in its status.
func (r *Reconciler) updateBindings(ctx context.Context, namespace string, st consumedState, restarted bool) error {
	for name := range st.bindings {
		b := &kf.SecretBinding{}
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, b); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return err
		}
		n, err := r.countConsumers(ctx, namespace, b.GetTargetName())
		if err != nil {
			return err
		}
		base := b.DeepCopy()
		b.Status.Consumers = n
		if restarted {
			b.Status.LastRestartTime = common.TimePtr(r.Clock.Now())
			if r.Recorder != nil {
				r.Recorder.Eventf(b, nil, corev1.EventTypeNormal, "WorkloadRestarted", "Restart",
					"restarted %s: data it reads of Secret %s changed", r.Kind, b.GetTargetName())
			}
		}
		if base.Status.Consumers == b.Status.Consumers && !restarted {
			continue
		}
		if err := r.Client.Status().Patch(ctx, b, client.MergeFrom(base)); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// countConsumers counts the opted-in workloads of every kind in namespace that read secret.
func (r *Reconciler) countConsumers(ctx context.Context, namespace, secret string) (int32, error) {
	var n int32
	for _, kind := range Kinds {
		list := newWorkloadList(kind)
		if err := r.Client.List(ctx, list, client.InNamespace(namespace)); err != nil {
			return 0, err
		}
		err := eachWorkload(list, func(w client.Object) {
			if _, ok := rollout.Consumed(&podTemplateOf(w).Spec)[secret]; ok {
				n++
			}
		})
		if err != nil {
			return 0, err
		}
	}
	return n, nil
}

// eachWorkload calls fn for every workload of list.
func eachWorkload(list client.ObjectList, fn func(client.Object)) error {
	return meta.EachListItem(list, func(o runtime.Object) error {
		fn(o.(client.Object))
		return nil
	})
}

func (r *Reconciler) firstSeen(key types.NamespacedName, now time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending = map[types.NamespacedName]time.Time{}
	}
	if t, ok := r.pending[key]; ok {
		return t
	}
	r.pending[key] = now
	return now
}

func (r *Reconciler) settle(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pending, key)
}

// consumedLabelName is the label name part recording what a workload read of Secret
// name: the name itself when a label allows it (at most 63 characters), else a hash.
func consumedLabelName(name string) string {
	if len(name) <= validation.LabelValueMaxLength {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return "h-" + hex.EncodeToString(sum[:16])
}

// byLabel keys per-Secret digests by their label name part.
func byLabel(perSecret map[string]string) map[string]string {
	out := make(map[string]string, len(perSecret))
	for name, d := range perSecret {
		out[consumedLabelName(name)] = d
	}
	return out
}

// recordedConsumption returns what the workload's labels record (labelled) and, for the
// comparison, those with what an older keyferry recorded in its annotation beneath them.
func recordedConsumption(w client.Object) (labelled, recorded map[string]string) {
	labelled = map[string]string{}
	for k, v := range w.GetLabels() {
		if name, ok := strings.CutPrefix(k, kf.LabelPrefixConsumed); ok {
			labelled[name] = v
		}
	}
	recorded = map[string]string{}
	for name, d := range decodeConsumed(w.GetAnnotations()[kf.AnnotationConsumed]) {
		recorded[consumedLabelName(name)] = d
	}
	maps.Copy(recorded, labelled)
	return labelled, recorded
}

// consumedScheme versions the digests in the older annotation: digests of another scheme
// are read as not recorded, never as a change. v2: digests over the cache's per-key
// digests (trim.Secret).
const consumedScheme = "v2;"

// decodeConsumed reads the older annotation "v2;name=digest,...".
func decodeConsumed(s string) map[string]string {
	out := map[string]string{}
	s, ok := strings.CutPrefix(s, consumedScheme)
	if !ok {
		return out
	}
	for _, p := range strings.Split(s, ",") {
		if name, d, ok := strings.Cut(p, "="); ok {
			out[name] = d
		}
	}
	return out
}

func joinSorted(m map[string]string) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// SetupWithManager registers the reconciler and its watches: the opted-in workloads of
// its kind, and the managed Secrets they read.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named(strings.ToLower(r.Kind)+"-restarts").
		For(newWorkload(r.Kind)).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.secretToWorkloads)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2, NewQueue: common.NamespaceFairQueue}).
		Complete(r)
}

// secretToWorkloads maps a managed Secret to the opted-in workloads of this kind in its
// namespace that read it.
func (r *Reconciler) secretToWorkloads(ctx context.Context, s client.Object) []ctrl.Request {
	list := newWorkloadList(r.Kind)
	if err := r.Client.List(ctx, list, client.InNamespace(s.GetNamespace())); err != nil {
		return nil
	}
	var reqs []ctrl.Request
	_ = eachWorkload(list, func(w client.Object) {
		if _, ok := rollout.Consumed(&podTemplateOf(w).Spec)[s.GetName()]; ok {
			reqs = append(reqs, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(w)})
		}
	})
	return reqs
}
