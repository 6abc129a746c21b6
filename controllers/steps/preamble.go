package steps

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Stage is where an object stands when a pass begins.
type Stage int

const (
	// Gone says the object no longer exists; the reconciler forgets what it held for it.
	Gone Stage = iota
	// Deleting says the object is marked for deletion; only cleanup runs.
	Deleting
	// Suspended says spec.suspend holds it; nothing is read, written or reported.
	Suspended
	// Live says the pass runs.
	Live
)

// suspendable objects can be held by spec.suspend.
type suspendable interface{ IsSuspended() bool }

// Fetch reads key into obj and says where it stands. Only API server failures other
// than NotFound are returned.
func Fetch(ctx context.Context, c client.Reader, key client.ObjectKey, obj client.Object) (Stage, error) {
	if err := c.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return Gone, nil
		}
		return Gone, err
	}
	if !obj.GetDeletionTimestamp().IsZero() {
		return Deleting, nil
	}
	if s, ok := obj.(suspendable); ok && s.IsSuspended() {
		return Suspended, nil
	}
	return Live, nil
}
