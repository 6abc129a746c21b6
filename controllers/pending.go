package controllers

import (
	"context"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keyferryv1alpha1 "github.com/keyferry/keyferry/api/v1alpha1"
)

// This build accepts and validates keyferry's objects but does not talk to vaults yet.
// Its reconcilers say so in status rather than pretend to sync.
const notSyncingMessage = "accepted; this keyferry build does not contact vaults yet"

// statusObject is a keyferry object whose status has conditions and an observed generation.
type statusObject interface {
	client.Object
	conditions() *[]metav1.Condition
	setObservedGeneration(int64)
}

type vcStatus struct {
	*keyferryv1alpha1.VaultConnection
}

func (o vcStatus) conditions() *[]metav1.Condition { return &o.Status.Conditions }
func (o vcStatus) setObservedGeneration(g int64)   { o.Status.ObservedGeneration = g }

type cvcStatus struct {
	*keyferryv1alpha1.ClusterVaultConnection
}

func (o cvcStatus) conditions() *[]metav1.Condition { return &o.Status.Conditions }
func (o cvcStatus) setObservedGeneration(g int64)   { o.Status.ObservedGeneration = g }

type sbStatus struct {
	*keyferryv1alpha1.SecretBinding
}

func (o sbStatus) conditions() *[]metav1.Condition { return &o.Status.Conditions }
func (o sbStatus) setObservedGeneration(g int64)   { o.Status.ObservedGeneration = g }

// markPending records that the object was seen, without claiming it is Ready.
func markPending(ctx context.Context, c client.Client, obj statusObject) error {
	base := obj.DeepCopyObject().(client.Object)
	changed := meta.SetStatusCondition(obj.conditions(), metav1.Condition{
		Type:               keyferryv1alpha1.ConditionReady,
		Status:             metav1.ConditionUnknown,
		Reason:             keyferryv1alpha1.ReasonProgressing,
		Message:            notSyncingMessage,
		ObservedGeneration: obj.GetGeneration(),
	})
	if !changed {
		return nil
	}
	return c.Status().Patch(ctx, obj, client.MergeFrom(base))
}

func getAndMark(ctx context.Context, c client.Client, req ctrl.Request, obj statusObject) (ctrl.Result, error) {
	if err := c.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return ctrl.Result{}, markPending(ctx, c, obj)
}

// VaultConnectionReconciler reconciles VaultConnections.
type VaultConnectionReconciler struct{ Client client.Client }

// Reconcile handles one VaultConnection.
func (r *VaultConnectionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return getAndMark(ctx, r.Client, req, vcStatus{&keyferryv1alpha1.VaultConnection{}})
}

// SetupWithManager registers the reconciler.
func (r *VaultConnectionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&keyferryv1alpha1.VaultConnection{}).Complete(r)
}

// ClusterVaultConnectionReconciler reconciles ClusterVaultConnections.
type ClusterVaultConnectionReconciler struct{ Client client.Client }

// Reconcile handles one ClusterVaultConnection.
func (r *ClusterVaultConnectionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return getAndMark(ctx, r.Client, req, cvcStatus{&keyferryv1alpha1.ClusterVaultConnection{}})
}

// SetupWithManager registers the reconciler.
func (r *ClusterVaultConnectionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&keyferryv1alpha1.ClusterVaultConnection{}).Complete(r)
}

// SecretBindingReconciler reconciles SecretBindings.
type SecretBindingReconciler struct{ Client client.Client }

// Reconcile handles one SecretBinding.
func (r *SecretBindingReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return getAndMark(ctx, r.Client, req, sbStatus{&keyferryv1alpha1.SecretBinding{}})
}

// SetupWithManager registers the reconciler.
func (r *SecretBindingReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&keyferryv1alpha1.SecretBinding{}).Complete(r)
}
