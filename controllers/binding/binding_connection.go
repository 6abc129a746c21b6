package binding

import (
	"context"
	"errors"

	"github.com/keyferry/keyferry/controllers/common"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
	"github.com/keyferry/keyferry/internal/vault"
)

// errClientPending marks a connection whose provider client is not built yet: right
// after a start (or a new connection) its reconciler may not have run. That takes a
// moment, so the binding looks again shortly without writing a transient status; the
// connection's first status change wakes it too.
var errClientPending = errors.New("connection client pending")

// errConnectionSuspended marks a connection whose spec.suspend is true: no request goes
// through it, and its bindings hold their last Secret and status until it resumes.
var errConnectionSuspended = errors.New("connection suspended")

// resolvedConnection is the connection a binding uses.
type resolvedConnection struct {
	conn  kf.Connection
	ready bool
}

// connectionClient resolves the binding's connection and returns its provider client.
func (r *Reconciler) connectionClient(ctx context.Context, b *kf.SecretBinding) (*vault.Client, resolvedConnection, error) {
	ref := b.Spec.ConnectionRef
	kind := ref.GetKind()
	conn := kf.NewConnection(kind, b.Namespace, ref.Name)
	rc := resolvedConnection{conn: conn}
	notReady := func(format string, args ...any) (*vault.Client, resolvedConnection, error) {
		return nil, rc, common.TransientErr(kf.ReasonConnectionNotReady, format, args...)
	}
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(conn), conn); err != nil {
		switch {
		case !apierrors.IsNotFound(err):
			return nil, rc, err
		case kind == kf.ConnectionKindCluster:
			return notReady("%s %s not found", kind, ref.Name)
		default:
			return notReady("%s %s not found in namespace %s", kind, ref.Name, b.Namespace)
		}
	}
	if cvc, ok := conn.(*kf.ClusterVaultConnection); ok {
		allowed, err := common.NamespaceAllowed(ctx, r.Client, cvc, b.Namespace)
		if err != nil {
			return nil, rc, err
		}
		if !allowed {
			return nil, rc, common.StalledErr(kf.ReasonNotAllowed, "%s %s does not allow namespace %s (namespaceSelector)", kind, ref.Name, b.Namespace)
		}
	}
	if !conn.GetDeletionTimestamp().IsZero() {
		return notReady("%s %s is being deleted", kind, ref.Name)
	}
	if conn.ConnectionSpec().Suspend {
		return nil, rc, errConnectionSuspended
	}
	conds := conn.ConnectionStatus().Conditions
	rc.ready = common.IsReady(conds)
	if ready := common.ReadyOf(conds); ready != nil {
		switch ready.Reason {
		case kf.ReasonCredentialsNotFound, kf.ReasonInvalidSpec:
			return notReady("%s %s: %s: %s", kind, ref.Name, ready.Reason, ready.Message)
		}
	}
	c, ok := r.Registry.Get(common.ConnectionIDOf(conn))
	if !ok {
		return nil, rc, errClientPending
	}
	return c, rc, nil
}

// wakeConnection asks the connection's reconciler to look again now (a 401 or 403 was
// seen, or it does not know yet that its credentials work).
func (r *Reconciler) wakeConnection(rc resolvedConnection) {
	ch := r.Wake[rc.conn.ConnectionKind()]
	if ch == nil {
		return
	}
	obj := kf.NewConnection(rc.conn.ConnectionKind(), rc.conn.GetNamespace(), rc.conn.GetName())
	select {
	case ch <- event.GenericEvent{Object: obj}:
	default: // a wake-up is already queued
	}
}

// lentTarget is what the binding reads through conn: its vault and environment, with the
// binding's own request or else the connection's. A ClusterVaultConnection lends its
// credential only for the vaults and environments it allows, and with its own request
// unless it lets bindings set theirs.
func lentTarget(conn kf.Connection, b *kf.SecretBinding) (vault.Target, error) {
	rq := b.Spec.Request
	if cvc, ok := conn.(*kf.ClusterVaultConnection); ok {
		lend := cvc.Spec
		switch {
		case !common.GlobsAllow(lend.AllowedVaults, b.Spec.Vault, b.Namespace):
			return vault.Target{}, common.StalledErr(kf.ReasonNotAllowed, "ClusterVaultConnection %s does not lend vault %q to namespace %s (allowedVaults)", cvc.Name, b.Spec.Vault, b.Namespace)
		case !common.GlobsAllow(lend.AllowedEnvironments, b.Spec.Environment, b.Namespace):
			return vault.Target{}, common.StalledErr(kf.ReasonNotAllowed, "ClusterVaultConnection %s does not lend environment %q to namespace %s (allowedEnvironments)", cvc.Name, b.Spec.Environment, b.Namespace)
		case rq != nil && !lend.AllowBindingRequest:
			return vault.Target{}, common.StalledErr(kf.ReasonNotAllowed, "ClusterVaultConnection %s does not let bindings set their own request (allowBindingRequest); remove spec.request to use the connection's", cvc.Name)
		}
	}
	if rq == nil {
		rq = conn.ConnectionSpec().Request
	}
	return vaultTarget(b, rq), nil
}
