package binding

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/steps"
)

// finalize removes a Merge binding's keys (its field manager applies nothing, so the
// fields it alone owned go) and then the finalizer. Owner Secrets go with the binding
// through garbage collection; Orphan Secrets stay.
func (r *Reconciler) finalize(ctx context.Context, b *kf.SecretBinding) error {
	if !controllerutil.ContainsFinalizer(b, kf.FinalizerMergeCleanup) {
		return nil
	}
	s := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: b.GetTargetName()}, s)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return err
	case s.Labels[kf.LabelBinding] == kf.LabelValue(b.Name):
		err := r.Client.Apply(ctx, corev1ac.Secret(s.Name, s.Namespace), client.FieldOwner(kf.FieldManager), client.ForceOwnership)
		switch {
		case err == nil, apierrors.IsNotFound(err):
		case apierrors.IsInvalid(err), apierrors.IsForbidden(err), apierrors.IsConflict(err):
			// The API refuses the cleanup (a typed Secret needs the key): say so and let
			// the binding go rather than keep it Terminating for ever.
			if r.Recorder != nil {
				r.Recorder.Eventf(b, nil, corev1.EventTypeWarning, "CleanupRefused", "Delete",
					"the API server refused removing this binding's keys from Secret %s: %s", s.Name, apiMessage(err))
			}
		default:
			return err
		}
	}
	return steps.RemoveFinalizer(ctx, r.Client, b, kf.FinalizerMergeCleanup)
}
