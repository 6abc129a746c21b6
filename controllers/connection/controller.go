// Package connection is the reconciler of both connection kinds (VaultConnection and
// ClusterVaultConnection): credentials, the provider client in the registry, the session,
// and status.
package connection

import (
	"context"
	"errors"
	"time"

	"github.com/keyferry/keyferry/controllers/conditions"
	"github.com/keyferry/keyferry/controllers/queue"
	"github.com/keyferry/keyferry/controllers/resolve"

	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/steps"
	"github.com/keyferry/keyferry/internal/metrics"
	"github.com/keyferry/keyferry/internal/vault"
)

// Reconciler reconciles the connections of one Kind (VaultConnection or
// ClusterVaultConnection): it resolves credentials, keeps the connection's provider client
// in the registry, keeps its session alive where it logs in, and reports what it knows in
// status.
type Reconciler struct {
	Client client.Client
	// Credentials reads the Secrets labelled keyferry.dev/credentials=true.
	Credentials client.Reader
	Registry    *vault.Registry
	Clock       clock.PassiveClock
	Recorder    events.EventRecorder
	Kind        kf.ConnectionKind
	// PollInterval is how often credentials are read again, so a rotated Secret takes
	// effect without watching every Secret of the cluster.
	PollInterval time.Duration
	// Wake receives a connection to reconcile now (a binding saw a 401 or 403).
	Wake <-chan event.GenericEvent
	// Workers is the number of concurrent reconciles.
	Workers int

	// CredentialsCache is watched so that a changed credential wakes its connections.
	CredentialsCache cache.Cache
	// ClientReady receives a connection whose provider client this process has just
	// built: its bindings waiting for it (pending passes) go on at once, not after a retry.
	ClientReady chan<- event.GenericEvent
	// ReportOnly serves the connection without writing its status (a ClusterVaultConnection
	// on a shard other than 0: every shard has its own session, shard 0 reports). It never
	// rotates keys either: shard 0 does, the others follow the Secret.
	ReportOnly bool
	// LiveReader reads from the API server, not the cache: a rotation acts on the
	// credential Secret as it is.
	LiveReader client.Reader
	// MinRotationInterval is the shortest rotation every honoured (default 1h; tests
	// lower it).
	MinRotationInterval time.Duration
	// RotationCrash, when set, is asked after each rotation step; an error ends the pass
	// there as a killed manager would (tests of resumption).
	RotationCrash func(conn kf.Connection, step string) error

	waker queue.Waker
	fresh *freshReader
	rot   *rotator
}

// init builds what the reconciler keeps between passes.
func (r *Reconciler) init() {
	if r.fresh != nil {
		return
	}
	live := r.LiveReader
	if live == nil {
		live = r.Credentials
	}
	if r.MinRotationInterval <= 0 {
		r.MinRotationInterval = time.Hour
	}
	r.fresh = newFreshReader(r.Credentials, live)
	r.rot = &rotator{client: r.Client, live: live, fresh: r.fresh, now: r.Clock.Now, minEvery: r.MinRotationInterval, crash: r.RotationCrash}
}

// Reconcile handles one connection.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, err error) {
	r.init()
	id := resolve.ConnectionID(r.Kind, req.Namespace, req.Name)
	conn := kf.NewConnection(r.Kind, req.Namespace, req.Name)
	stage, err := steps.Fetch(ctx, r.Client, req.NamespacedName, conn)
	switch {
	case err != nil:
		return ctrl.Result{}, err
	case stage == steps.Gone:
		r.Registry.Remove(id)
		metrics.CredentialExpiry(id, time.Time{})
		return ctrl.Result{}, nil
	case stage == steps.Deleting:
		return ctrl.Result{}, r.finalize(ctx, conn, id)
	}
	// The finalizer signs the session out when the connection goes.
	if err := steps.EnsureFinalizer(ctx, r.Client, conn, kf.FinalizerSignout, true); err != nil {
		return ctrl.Result{}, err
	}
	if stage == steps.Suspended {
		// No login, no refresh, status as it was; resuming bumps the generation, which
		// brings the connection (and its bindings) back at once.
		ctrl.LoggerFrom(ctx).V(1).Info("suspended: no request to the provider")
		return ctrl.Result{}, nil
	}
	prev := conn.ConnectionStatus().DeepCopy()
	_, had := r.Registry.Get(id)
	obs, err := r.observe(ctx, conn, id)
	if err != nil {
		return ctrl.Result{}, err
	}
	if _, has := r.Registry.Get(id); has && !had && r.ClientReady != nil {
		select {
		// A fresh object: conn is still written to below (status patch), the handler reads.
		case r.ClientReady <- event.GenericEvent{Object: kf.NewConnection(r.Kind, conn.GetNamespace(), conn.GetName())}:
		case <-ctx.Done():
		}
	}
	next := computeConnectionStatus(*prev, obs)
	if err := r.patchStatus(ctx, conn, next); err != nil {
		return ctrl.Result{}, err
	}
	metrics.CredentialExpiry(id, obs.credential.expiresAt)
	if !r.ReportOnly {
		r.credentialEvents(conn, *prev, next, obs)
	}
	return ctrl.Result{RequeueAfter: r.requeueAfter(obs)}, nil
}

// observe resolves credentials, gets the client and logs in where the auth needs it.
// Errors about the connection come back inside the observation; only API server failures
// are returned.
func (r *Reconciler) observe(ctx context.Context, conn kf.Connection, id string) (connectionObservation, error) {
	obs := connectionObservation{generation: conn.GetGeneration(), now: r.Clock.Now(), login: conn.ConnectionSpec().Auth.Login != nil}
	spec := conn.ConnectionSpec()
	obs.spec = spec
	cfg, cred, err := vaultConfig(ctx, r.fresh, spec, conn.SecretNamespace)
	var c *vault.Client
	if err == nil {
		c, err = r.Registry.Client(id, cfg)
	}
	if rot, _ := spec.RotatedCredential(); err == nil && rot != nil && !r.ReportOnly {
		done, rerr := r.rot.rotate(ctx, conn, c, cred)
		if rerr != nil {
			return obs, rerr
		}
		obs.rotation = &done
		if done.wrote {
			// The serving key may have changed: read it again (live, see freshReader).
			if cfg, cred, err = vaultConfig(ctx, r.fresh, spec, conn.SecretNamespace); err == nil {
				c, err = r.Registry.Client(id, cfg)
			}
		}
	}
	var rotStatus *kf.RotationStatus
	if obs.rotation != nil {
		rotStatus = &obs.rotation.status
	}
	obs.credential = credentialFactsOf(cred, cfg.Token, rotStatus)
	if err == nil && obs.login {
		// The login runs in the background; the connection is woken when it ends.
		key := client.ObjectKeyFromObject(conn)
		obs.token, err = c.StartAuthenticate(func() { r.waker.Wake(key) })
		if errors.Is(err, vault.ErrPending) {
			obs.loggingIn, err = true, nil
		}
	}
	if err != nil {
		ce, ok := conditions.AsConditionError(err)
		if !ok {
			return obs, err
		}
		obs.err = ce
	}
	if c != nil {
		obs.outcome, obs.pause = c.LastOutcome(), c.Pause()
	}
	return obs, nil
}

// requeueAfter is the credentials poll interval, or sooner the end of a provider pause
// or the moment a refreshable session is due for renewal (so it never lapses).
func (r *Reconciler) requeueAfter(obs connectionObservation) time.Duration {
	d := r.PollInterval
	if obs.pause != nil {
		if until := obs.pause.RetryAt.Sub(obs.now); until > 0 && until < d {
			d = until + time.Second
		}
	}
	if renew := obs.token.RenewAt.Sub(obs.now); !obs.token.RenewAt.IsZero() && renew < d {
		d = max(renew, time.Second)
	}
	if rot := obs.rotation; rot != nil {
		for _, at := range []time.Time{rot.retryAt, timeOf(rot.status.NextRotation)} {
			if until := at.Sub(obs.now); !at.IsZero() && until < d {
				d = max(until, time.Second)
			}
		}
	}
	return d
}

// credentialEvents tells of a completed or stopped rotation and of a credential that
// starts to expire, once each (on the transition).
func (r *Reconciler) credentialEvents(conn kf.Connection, prev, next kf.VaultConnectionStatus, obs connectionObservation) {
	if rot := obs.rotation; rot != nil && rot.rotated != "" {
		r.Recorder.Eventf(conn, nil, corev1.EventTypeNormal, "Rotated", "Rotate", "%s", rot.rotated)
	}
	was, now := meta.FindStatusCondition(prev.Conditions, kf.ConditionCredentialsHealthy), meta.FindStatusCondition(next.Conditions, kf.ConditionCredentialsHealthy)
	if now == nil || now.Status != metav1.ConditionFalse || (was != nil && was.Reason == now.Reason && was.Status == now.Status) {
		return
	}
	r.Recorder.Eventf(conn, nil, corev1.EventTypeWarning, now.Reason, "Rotate", "%s", now.Message)
}

func timeOf(t *metav1.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}

// patchStatus writes the connection's status; a report-only reconciler (a
// ClusterVaultConnection on a shard other than 0) writes none.
func (r *Reconciler) patchStatus(ctx context.Context, conn kf.Connection, next kf.VaultConnectionStatus) error {
	if r.ReportOnly {
		return nil
	}
	return steps.PatchStatus(ctx, steps.StatusPatcher{Client: r.Client, Recorder: r.Recorder}, conn, conn.ConnectionStatus(), next)
}

// finalize signs the session out and lets the connection go. Bindings using it become
// ConnectionNotReady; their Secrets stay.
func (r *Reconciler) finalize(ctx context.Context, conn kf.Connection, id string) error {
	r.Registry.Remove(id)
	r.rot.forget(conn.GetUID())
	if !controllerutil.ContainsFinalizer(conn, kf.FinalizerSignout) {
		return nil
	}
	return steps.RemoveFinalizer(ctx, r.Client, conn, kf.FinalizerSignout)
}
