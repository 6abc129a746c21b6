package receiver

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/conditions"
	"github.com/keyferry/keyferry/controllers/queue"
	"github.com/keyferry/keyferry/controllers/steps"
)

// Reconciler writes RefreshReceivers' status: where they listen, whether hooks can reach
// them, and the last round a hook caused (read from the annotation the replica that took
// the hook wrote). It never acts on a hook itself.
type Reconciler struct {
	Client client.Client
	// Secrets reads the credential Secrets (cache, then live to tell a missing Secret
	// from one without the label).
	Secrets  client.Reader
	Clock    clock.PassiveClock
	Recorder events.EventRecorder
	// ListenerEnabled says whether this manager serves hooks at all.
	ListenerEnabled bool
}

// Reconcile handles one RefreshReceiver: fetch, observe, write status once.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	rr := &kf.RefreshReceiver{}
	stage, err := steps.Fetch(ctx, r.Client, req.NamespacedName, rr)
	if err != nil || stage != steps.Live {
		return ctrl.Result{}, err
	}
	_, path, err := entry(ctx, r.Secrets, rr)
	fail, isCond := conditions.AsConditionError(err)
	if err != nil && !isCond {
		return ctrl.Result{}, fmt.Errorf("receiver %s: %w", req.NamespacedName, err)
	}
	st := computeStatus(rr, observed{path: path, fail: fail, listening: r.ListenerEnabled}, r.Clock.Now())
	return ctrl.Result{}, steps.PatchStatus(ctx, steps.StatusPatcher{Client: r.Client, Recorder: r.Recorder}, rr, &rr.Status, st)
}

// observed is what one pass found.
type observed struct {
	path      string
	fail      *conditions.ConditionError
	listening bool
}

// computeStatus derives the receiver's status from what a pass found, apart from actions.
func computeStatus(rr *kf.RefreshReceiver, o observed, now time.Time) kf.RefreshReceiverStatus {
	st := *rr.Status.DeepCopy()
	st.ObservedGeneration = rr.Generation
	st.WebhookPath = o.path
	if round, ok := parseRound(rr.Annotations[kf.AnnotationLastRound]); ok {
		st.LastHandled = round
	}
	cond := metav1.Condition{Type: kf.ConditionReady, ObservedGeneration: rr.Generation}
	stalled := true
	switch {
	case o.fail != nil:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, o.fail.Reason, o.fail.Message
		stalled = o.fail.Class == conditions.ClassStalled
	case !o.listening:
		cond.Status, cond.Reason = metav1.ConditionFalse, kf.ReasonListenerDisabled
		cond.Message = "this keyferry runs without its webhook listener (--webhook-cert-dir or --webhook-allow-http; chart value webhook.enabled): hooks cannot reach it"
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, kf.ReasonListening
		cond.Message = fmt.Sprintf("POST %s hooks to status.webhookPath on keyferry's webhook listener; each refreshes the SecretBindings and SecretPushes of this namespace that spec.selector picks", rr.Spec.Type)
	}
	conditions.SetCondition(&st.Conditions, cond, now)
	conditions.SetProgress(&st.Conditions, cond, stalled, now)
	return st
}

// SetupWithManager registers the reconciler: receivers (spec and annotation changes) and
// the credential Secrets of their namespace (a rotated secret moves the path).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, credentials cache.Cache) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("refreshreceiver").
		For(&kf.RefreshReceiver{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, queue.DeletionPredicate()))).
		WatchesRawSource(source.Kind(credentials, client.Object(&corev1.Secret{}), handler.EnqueueRequestsFromMapFunc(r.secretToReceivers))).
		Complete(r)
}

// secretToReceivers maps a credential Secret to the receivers of its namespace reading it.
func (r *Reconciler) secretToReceivers(ctx context.Context, s client.Object) []ctrl.Request {
	list := &kf.RefreshReceiverList{}
	if err := r.Client.List(ctx, list, client.InNamespace(s.GetNamespace())); err != nil {
		return nil
	}
	var out []ctrl.Request
	for _, rr := range list.Items {
		if rr.Spec.SecretRef.Name == s.GetName() {
			out = append(out, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(&rr)})
		}
	}
	return out
}
