package push

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/keyferry/keyferry/controllers/conditions"
	"github.com/keyferry/keyferry/controllers/resolve"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/steps"
	"github.com/keyferry/keyferry/internal/vault"
)

// deleteRetry is how soon a deletion the provider could not take now is tried again.
const deleteRetry = 10 * time.Second

// finalize runs deletionPolicy Delete: remove the keys keyferry pushed and still owns,
// then let the SecretPush go. What cannot be done (the connection is gone or refuses) is
// an Event and the object is let go rather than kept Terminating for ever; a provider
// that is down or rate limited is waited for.
func (r *Reconciler) finalize(ctx context.Context, sp *kf.SecretPush) (ctrl.Result, error) {
	key := client.ObjectKeyFromObject(sp)
	if !controllerutil.ContainsFinalizer(sp, kf.FinalizerPushCleanup) {
		r.jobs.stop(key)
		return ctrl.Result{}, nil
	}
	c, conn, err := r.connection(ctx, sp)
	switch {
	case errors.Is(err, resolve.ErrClientPending):
		return ctrl.Result{RequeueAfter: clientPendingRetry}, nil
	case errors.Is(err, resolve.ErrConnectionSuspended):
		return ctrl.Result{}, r.letGo(ctx, sp, "its connection is suspended")
	case err != nil:
		if _, ok := conditions.AsConditionError(err); !ok {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, r.letGo(ctx, sp, err.Error())
	}
	pt, read, err := targets(sp, conn)
	if err == nil {
		err = c.CanDelete(pt)
	}
	if err != nil {
		return ctrl.Result{}, r.letGo(ctx, sp, err.Error())
	}
	job := pushJob{read: read, target: pt, pushed: pushedMap(sp.Status.Pushed), digest: newDigester(r.HMACKey)}
	res, done := r.jobs.start(key, resolve.ConnectionIDOf(conn), "delete", func(ctx context.Context) pushResult { return job.deleteOwned(ctx, c) }, func() { r.waker.Wake(key) })
	if !done {
		return ctrl.Result{RequeueAfter: pushBackstop}, nil
	}
	if res.err != nil {
		if ve, ok := vault.AsError(res.err); ok {
			if ce := conditions.FromVault(ve); ce.Class != conditions.ClassStalled {
				return ctrl.Result{RequeueAfter: max(deleteRetry, ce.RetryAt.Sub(r.Clock.Now()))}, nil
			}
		}
		return ctrl.Result{}, r.letGo(ctx, sp, res.err.Error())
	}
	msg := fmt.Sprintf("deleted %d pushed keys from %s/%s", len(res.pushed), sp.Spec.Vault, sp.Spec.Environment)
	if len(res.conflicts) > 0 {
		msg += fmt.Sprintf("; left %s, changed in the vault since keyferry pushed %s", strings.Join(res.conflicts, ", "), pronoun(res.conflicts, "it", "them"))
	}
	r.event(sp, corev1.EventTypeNormal, "KeysDeleted", msg)
	return ctrl.Result{}, r.removeFinalizer(ctx, sp)
}

// letGo records why the pushed keys stay in the vault and removes the finalizer.
func (r *Reconciler) letGo(ctx context.Context, sp *kf.SecretPush, why string) error {
	r.event(sp, corev1.EventTypeWarning, "KeysKept", "pushed keys left in the vault: "+why)
	return r.removeFinalizer(ctx, sp)
}

func (r *Reconciler) removeFinalizer(ctx context.Context, sp *kf.SecretPush) error {
	r.jobs.stop(client.ObjectKeyFromObject(sp))
	return steps.RemoveFinalizer(ctx, r.Client, sp, kf.FinalizerPushCleanup)
}

func (r *Reconciler) event(sp *kf.SecretPush, kind, reason, msg string) {
	if r.Recorder != nil {
		r.Recorder.Eventf(sp, nil, kind, reason, "Delete", "%s", msg)
	}
}
