package steps

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// EnsureFinalizer keeps finalizer on obj exactly when want: one merge patch of the
// finalizers, and none when they already say so.
func EnsureFinalizer(ctx context.Context, c client.Writer, obj client.Object, finalizer string, want bool) error {
	if want == controllerutil.ContainsFinalizer(obj, finalizer) {
		return nil
	}
	base := obj.DeepCopyObject().(client.Object)
	if want {
		controllerutil.AddFinalizer(obj, finalizer)
	} else {
		controllerutil.RemoveFinalizer(obj, finalizer)
	}
	return c.Patch(ctx, obj, client.MergeFrom(base))
}

// RemoveFinalizer lets obj go once its cleanup ran; an object already gone is fine.
func RemoveFinalizer(ctx context.Context, c client.Writer, obj client.Object, finalizer string) error {
	return client.IgnoreNotFound(EnsureFinalizer(ctx, c, obj, finalizer, false))
}
