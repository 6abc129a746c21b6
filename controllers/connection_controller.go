package controllers

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
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
	"sigs.k8s.io/controller-runtime/pkg/source"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
	"github.com/keyferry/keyferry/internal/vault"
)

// connection is what the reconciler needs of either connection kind.
type connection interface {
	client.Object
	// object is the underlying API object, for the client.
	object() client.Object
	connSpec() *kf.VaultConnectionSpec
	connStatus() *kf.VaultConnectionStatus
	// secretNamespace is where a secretRef with the given namespace field points.
	secretNamespace(refNamespace string) string
}

type namespacedConn struct{ *kf.VaultConnection }

func (c namespacedConn) object() client.Object                 { return c.VaultConnection }
func (c namespacedConn) connSpec() *kf.VaultConnectionSpec     { return &c.Spec }
func (c namespacedConn) connStatus() *kf.VaultConnectionStatus { return &c.Status }
func (c namespacedConn) secretNamespace(string) string         { return c.Namespace }

type clusterConn struct{ *kf.ClusterVaultConnection }

func (c clusterConn) object() client.Object                 { return c.ClusterVaultConnection }
func (c clusterConn) connSpec() *kf.VaultConnectionSpec     { return &c.Spec.VaultConnectionSpec }
func (c clusterConn) connStatus() *kf.VaultConnectionStatus { return &c.Status }
func (c clusterConn) secretNamespace(ns string) string      { return ns }

// connectionID keys a connection's client in the registry.
func connectionID(kind kf.ConnectionKind, namespace, name string) string {
	if kind == kf.ConnectionKindCluster {
		return string(kind) + "/" + name
	}
	return string(kind) + "/" + namespace + "/" + name
}

// ConnectionReconciler reconciles VaultConnections or (Cluster true)
// ClusterVaultConnections: it resolves credentials, keeps the connection's provider client
// in the registry, logs in where needed and reports what it knows in status.
type ConnectionReconciler struct {
	Client   client.Client
	Registry *vault.Registry
	Clock    clock.PassiveClock
	Recorder events.EventRecorder
	Cluster  bool
	// PollInterval is how often credentials are read again, so a rotated Secret takes
	// effect without watching every Secret of the cluster.
	PollInterval time.Duration
	// Wake receives a connection to reconcile now (a binding saw a 401 or 403).
	Wake <-chan event.GenericEvent
	// Workers is the number of concurrent reconciles.
	Workers int
}

func (r *ConnectionReconciler) kind() kf.ConnectionKind {
	if r.Cluster {
		return kf.ConnectionKindCluster
	}
	return kf.ConnectionKindNamespaced
}

func (r *ConnectionReconciler) newObject() connection {
	if r.Cluster {
		return clusterConn{&kf.ClusterVaultConnection{}}
	}
	return namespacedConn{&kf.VaultConnection{}}
}

// Reconcile handles one connection.
func (r *ConnectionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, err error) {
	id := connectionID(r.kind(), req.Namespace, req.Name)
	conn := r.newObject()
	if err := r.Client.Get(ctx, req.NamespacedName, conn.object()); err != nil {
		if client.IgnoreNotFound(err) == nil {
			r.Registry.Remove(ctx, id)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !conn.GetDeletionTimestamp().IsZero() {
		return ctrl.Result{}, r.finalize(ctx, conn, id)
	}
	if !controllerutil.ContainsFinalizer(conn, kf.FinalizerSignout) {
		base := conn.DeepCopyObject().(client.Object)
		controllerutil.AddFinalizer(conn, kf.FinalizerSignout)
		if err := r.Client.Patch(ctx, conn.object(), client.MergeFrom(base)); err != nil {
			return ctrl.Result{}, err
		}
	}

	prev := conn.connStatus().DeepCopy()
	obs, err := r.observe(ctx, conn, id)
	if err != nil {
		return ctrl.Result{}, err
	}
	next := computeConnectionStatus(*prev, obs)
	if err := r.patchStatus(ctx, conn, *prev, next); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: r.requeueAfter(obs)}, nil
}

// observe resolves credentials, gets the client and logs in where the auth needs it.
// Errors about the connection come back inside the observation; only API server failures
// are returned.
func (r *ConnectionReconciler) observe(ctx context.Context, conn connection, id string) (connectionObservation, error) {
	obs := connectionObservation{generation: conn.GetGeneration(), now: r.Clock.Now(), login: conn.connSpec().Auth.Login != nil}
	cfg, err := vaultConfig(ctx, r.Client, conn.connSpec(), conn.secretNamespace)
	var c *vault.Client
	if err == nil {
		c, err = r.Registry.Client(id, cfg)
	}
	if err == nil && obs.login {
		obs.token, err = c.Authenticate(ctx)
	}
	if err != nil {
		ce, ok := asConditionError(err)
		if !ok {
			return obs, err
		}
		obs.err = ce
	}
	if c != nil {
		obs.outcome, obs.pausedUntil = c.LastOutcome(), c.PausedUntil()
	}
	return obs, nil
}

// requeueAfter is the credentials poll interval, or the end of a provider pause if sooner.
func (r *ConnectionReconciler) requeueAfter(obs connectionObservation) time.Duration {
	d := r.PollInterval
	if until := obs.pausedUntil.Sub(obs.now); until > 0 && until < d {
		d = until + time.Second
	}
	return d
}

func (r *ConnectionReconciler) patchStatus(ctx context.Context, conn connection, prev, next kf.VaultConnectionStatus) error {
	if equality.Semantic.DeepEqual(prev, next) {
		return nil
	}
	base := conn.DeepCopyObject().(client.Object)
	*conn.connStatus() = next
	if err := r.Client.Status().Patch(ctx, conn.object(), client.MergeFrom(base)); err != nil {
		return err
	}
	recordTransition(r.Recorder, conn.object(), readyOf(prev.Conditions), readyOf(next.Conditions))
	return nil
}

// finalize signs the session out and lets the connection go. Bindings using it become
// ConnectionNotReady; their Secrets stay.
func (r *ConnectionReconciler) finalize(ctx context.Context, conn connection, id string) error {
	r.Registry.Remove(ctx, id)
	if !controllerutil.ContainsFinalizer(conn, kf.FinalizerSignout) {
		return nil
	}
	base := conn.DeepCopyObject().(client.Object)
	controllerutil.RemoveFinalizer(conn, kf.FinalizerSignout)
	return client.IgnoreNotFound(r.Client.Patch(ctx, conn.object(), client.MergeFrom(base)))
}

// SetupWithManager registers the reconciler.
func (r *ConnectionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	var obj client.Object = &kf.VaultConnection{}
	name := "vaultconnection"
	if r.Cluster {
		obj, name = &kf.ClusterVaultConnection{}, "clustervaultconnection"
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named(name).
		For(obj, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, deletionPredicate()))).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.Workers, 1)})
	if r.Wake != nil {
		b = b.WatchesRawSource(source.Channel(r.Wake, &handler.EnqueueRequestForObject{}))
	}
	return b.Complete(r)
}

// deletionPredicate passes updates that mark an object for deletion.
func deletionPredicate() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return !e.ObjectNew.GetDeletionTimestamp().IsZero()
	}}
}
