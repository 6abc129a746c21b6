package workload

import (
	"context"
	"encoding/json"
	"time"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// patch records what the workload reads (labels: from had to want) and, to restart it
// (restartFor not empty), sets the pod-template annotation to the digest of that data:
// the restart is idempotent, a function of the data. Recording alone changes neither the
// spec nor the annotations, so the generation stays (a Deployment's annotations count).
func (r *Reconciler) patch(ctx context.Context, w client.Object, had, want map[string]string, restartFor string, now time.Time) error {
	lbls := map[string]any{}
	for name := range had {
		if _, ok := want[name]; !ok {
			lbls[kf.LabelPrefixConsumed+name] = nil
		}
	}
	for name, d := range want {
		lbls[kf.LabelPrefixConsumed+name] = d
	}
	md := map[string]any{"labels": lbls}
	body := map[string]any{"metadata": md}
	if restartFor != "" {
		// When, for the bindings' status (the spec changes anyway: the generation moves).
		md["annotations"] = map[string]string{kf.AnnotationRestartedAt: now.UTC().Format(time.RFC3339)}
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

// tellBindings records an Event on each binding whose Secret the restarted workload reads.
func (r *Reconciler) tellBindings(w client.Object, st consumedState) {
	if r.Recorder == nil {
		return
	}
	for name := range st.bindings {
		b := &kf.SecretBinding{}
		if err := r.Client.Get(context.Background(), types.NamespacedName{Namespace: w.GetNamespace(), Name: name}, b); err != nil {
			continue // gone, or the cache cannot say: an Event is not worth a retry
		}
		r.Recorder.Eventf(b, nil, corev1.EventTypeNormal, "WorkloadRestarted", "Restart",
			"restarted %s %s: data it reads of Secret %s changed", r.Kind, w.GetName(), b.GetTargetName())
	}
}
