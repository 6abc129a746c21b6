// Package clusterbinding is the ClusterSecretBinding reconciler: it writes one
// SecretBinding into every namespace the ClusterSecretBinding selects, removes it from
// namespaces that stop matching, never touches a binding it did not create, and sums the
// bindings' states up in status. It grants nothing: each binding still goes through its
// connection's rules.
package clusterbinding

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/steps"
)

const (
	// parallelWrites bounds the bindings written at once: a ClusterSecretBinding over
	// 1,000 namespaces is provisioned in seconds, within the client's QPS.
	parallelWrites = 16
	// conflictRecheck is how often a namespace whose binding name is taken is looked at
	// again: the foreign binding is not in keyferry's cache, so its deletion sends no event.
	conflictRecheck = 30 * time.Second
)

// Reconciler provisions ClusterSecretBindings.
type Reconciler struct {
	// Client reads ClusterSecretBindings and Namespaces from the cache and writes.
	Client client.Client
	// Bindings reads the SecretBindings labelled keyferry.dev/cluster-secret-binding in
	// every namespace (its own cache: with shards, the manager's cache holds only its
	// shard's namespaces, and this reconciler runs on shard 0 alone).
	Bindings client.Reader
	// APIReader reads live: a binding whose name is taken, to tell whose it is.
	APIReader client.Reader
	Clock     clock.PassiveClock
	Recorder  events.EventRecorder
	Workers   int

	mu sync.Mutex
	// checked remembers, per ClusterSecretBinding, the bindings found up to date, at which
	// resourceVersion and template: a binding unchanged since is known up to date without
	// comparing it again (any write to it, a hand edit included, moves its resourceVersion).
	checked map[string]map[types.UID]checkedAt
}

// checkedAt is the resourceVersion and template digest a binding was last found up to date at.
type checkedAt struct {
	resourceVersion string
	hash            string
}

// Reconcile provisions one ClusterSecretBinding and writes its status once.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	c := &kf.ClusterSecretBinding{}
	stage, err := steps.Fetch(ctx, r.Client, req.NamespacedName, c)
	switch {
	case err != nil:
		return ctrl.Result{}, err
	case stage == steps.Gone:
		r.remember(req.Name, nil)
		return ctrl.Result{}, nil
	case stage == steps.Deleting:
		return ctrl.Result{}, nil // its bindings go with it (owner references)
	case stage == steps.Suspended:
		// Nothing is provisioned or removed, status included; resuming bumps the generation.
		ctrl.LoggerFrom(ctx).V(1).Info("suspended: not provisioning")
		return ctrl.Result{}, nil
	}
	matching, err := r.matchingNamespaces(ctx, c)
	if err != nil {
		return ctrl.Result{}, err
	}
	children, err := r.children(ctx, c)
	if err != nil {
		return ctrl.Result{}, err
	}
	results, err := r.provision(ctx, c, matching, children)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.prune(ctx, c, matching, children); err != nil {
		return ctrl.Result{}, err
	}
	st := computeStatus(c.Status, c.Generation, results, r.Clock.Now())
	if err := steps.PatchStatus(ctx, steps.StatusPatcher{Client: r.Client, Recorder: r.Recorder}, c, &c.Status, st); err != nil {
		return ctrl.Result{}, err
	}
	for _, res := range results {
		if res.failure != nil && res.failure.Reason == kf.ReasonConflict {
			return ctrl.Result{RequeueAfter: conflictRecheck}, nil
		}
	}
	return ctrl.Result{}, nil
}

// matchingNamespaces lists, sorted, the namespaces c selects (by selector or by name) that
// exist and are not terminating.
func (r *Reconciler) matchingNamespaces(ctx context.Context, c *kf.ClusterSecretBinding) ([]string, error) {
	sel := labels.Nothing()
	if c.Spec.NamespaceSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(c.Spec.NamespaceSelector)
		if err != nil {
			return nil, fmt.Errorf("namespaceSelector of ClusterSecretBinding %s: %w", c.Name, err)
		}
		if !s.Empty() { // the schema refuses an empty selector; an old object matches nothing
			sel = s
		}
	}
	named := map[string]bool{}
	for _, n := range c.Spec.Namespaces {
		named[n] = true
	}
	list := &corev1.NamespaceList{}
	if err := r.Client.List(ctx, list); err != nil {
		return nil, err
	}
	var out []string
	for i := range list.Items {
		ns := &list.Items[i]
		if !ns.DeletionTimestamp.IsZero() || ns.Status.Phase == corev1.NamespaceTerminating {
			continue
		}
		if named[ns.Name] || sel.Matches(labels.Set(ns.Labels)) {
			out = append(out, ns.Name)
		}
	}
	return out, nil
}

// children returns the bindings c created, by namespace (only the owner reference counts).
func (r *Reconciler) children(ctx context.Context, c *kf.ClusterSecretBinding) (map[string][]*kf.SecretBinding, error) {
	list := &kf.SecretBindingList{}
	if err := r.Bindings.List(ctx, list, client.MatchingLabels{kf.LabelClusterSecretBinding: kf.LabelValue(c.Name)}); err != nil {
		return nil, err
	}
	out := map[string][]*kf.SecretBinding{}
	for i := range list.Items {
		if b := &list.Items[i]; ownedBy(b, c) {
			out[b.Namespace] = append(out[b.Namespace], b)
		}
	}
	return out, nil
}

// provision makes each matching namespace hold c's binding, a few namespaces at a time.
// Failures about one namespace come back in its result; API server trouble is returned.
func (r *Reconciler) provision(ctx context.Context, c *kf.ClusterSecretBinding, matching []string, children map[string][]*kf.SecretBinding) ([]namespaceResult, error) {
	results := make([]namespaceResult, len(matching))
	errs := make([]error, len(matching))
	before := r.recalled(c.Name)
	now := make(map[types.UID]checkedAt, len(matching))
	defer r.remember(c.Name, now)
	sem := make(chan struct{}, parallelWrites)
	var wg sync.WaitGroup
	for i, ns := range matching {
		var have *kf.SecretBinding
		for _, b := range children[ns] {
			if b.Name == c.GetBindingName() {
				have = b
			}
		}
		want := desired(c, ns)
		if have != nil {
			at := checkedAt{resourceVersion: have.ResourceVersion, hash: want.Annotations[kf.AnnotationTemplateHash]}
			if before[have.UID] == at || upToDate(have, want) {
				now[have.UID] = at
				results[i] = namespaceResult{namespace: ns, binding: have}
				continue
			}
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i], errs[i] = r.write(ctx, c, have, want)
		}()
	}
	wg.Wait()
	return results, errors.Join(errs...)
}

// write creates want, or applies it over have (a binding c created). A create never
// overwrites a binding that exists: if the name is taken, a live read tells whether it is
// c's (its label was removed) or someone else's (a Conflict, left alone).
func (r *Reconciler) write(ctx context.Context, c *kf.ClusterSecretBinding, have, want *kf.SecretBinding) (namespaceResult, error) {
	res := namespaceResult{namespace: want.Namespace}
	if have == nil {
		b := want.DeepCopy()
		err := r.Client.Create(ctx, b, client.FieldOwner(kf.FieldManager))
		if err == nil {
			res.binding = b
			return res, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return refused(res, err)
		}
		live := &kf.SecretBinding{}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(want), live); err != nil {
			return res, fmt.Errorf("reading SecretBinding %s/%s: %w", want.Namespace, want.Name, err)
		}
		if !ownedBy(live, c) {
			res.failure = &kf.NamespaceFailure{Namespace: want.Namespace, Reason: kf.ReasonConflict,
				Message: fmt.Sprintf("SecretBinding %s/%s exists and was not created by this ClusterSecretBinding", want.Namespace, want.Name)}
			return res, nil
		}
	}
	b, err := r.apply(ctx, want)
	if err != nil {
		return refused(res, err)
	}
	res.binding = b
	return res, nil
}

// apply writes want with server-side apply, taking back any field of the template that
// was edited by hand (fields it does not set stay as they are).
func (r *Reconciler) apply(ctx context.Context, want *kf.SecretBinding) (*kf.SecretBinding, error) {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(want)
	if err != nil {
		return nil, fmt.Errorf("converting SecretBinding %s/%s: %w", want.Namespace, want.Name, err)
	}
	unstructured.RemoveNestedField(u, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u, "status")
	obj := &unstructured.Unstructured{Object: u}
	if err := r.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner(kf.FieldManager), client.ForceOwnership); err != nil {
		return nil, err
	}
	out := &kf.SecretBinding{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, out); err != nil {
		return nil, fmt.Errorf("converting SecretBinding %s/%s: %w", want.Namespace, want.Name, err)
	}
	return out, nil
}

// refused turns the API server refusing a binding (validation, admission, quota) into
// that namespace's failure; other errors are returned for a retry.
func refused(res namespaceResult, err error) (namespaceResult, error) {
	if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) {
		msg := err.Error()
		if se, ok := err.(apierrors.APIStatus); ok {
			msg = se.Status().Message
		}
		res.failure = &kf.NamespaceFailure{Namespace: res.namespace, Reason: kf.ReasonInvalidSpec, Message: "the API server refused the SecretBinding: " + msg}
		return res, nil
	}
	return res, fmt.Errorf("writing SecretBinding in namespace %s: %w", res.namespace, err)
}

// prune deletes the bindings c created in namespaces it no longer selects, and those of an
// old bindingName. Their Secrets follow each binding's creationPolicy.
func (r *Reconciler) prune(ctx context.Context, c *kf.ClusterSecretBinding, matching []string, children map[string][]*kf.SecretBinding) error {
	keep := map[string]bool{}
	for _, ns := range matching {
		keep[ns] = true
	}
	for ns, bs := range children {
		for _, b := range bs {
			if keep[ns] && b.Name == c.GetBindingName() {
				continue
			}
			if !b.DeletionTimestamp.IsZero() {
				continue
			}
			err := r.Client.Delete(ctx, b, client.Preconditions{UID: &b.UID})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return fmt.Errorf("deleting SecretBinding %s/%s: %w", b.Namespace, b.Name, err)
			}
			ctrl.LoggerFrom(ctx).V(1).Info("removed binding from a namespace no longer selected", "binding", types.NamespacedName{Namespace: b.Namespace, Name: b.Name})
		}
	}
	return nil
}

func (r *Reconciler) recalled(name string) map[types.UID]checkedAt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.checked[name]
}

// remember keeps what one pass found up to date (nil forgets the ClusterSecretBinding):
// only the bindings of its last pass, so the memory follows the cluster.
func (r *Reconciler) remember(name string, now map[types.UID]checkedAt) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now == nil {
		delete(r.checked, name)
		return
	}
	if r.checked == nil {
		r.checked = map[string]map[types.UID]checkedAt{}
	}
	r.checked[name] = now
}
