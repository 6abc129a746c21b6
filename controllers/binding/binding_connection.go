package binding

import (
	"context"

	"github.com/keyferry/keyferry/controllers/common"

	"sigs.k8s.io/controller-runtime/pkg/event"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
	"github.com/keyferry/keyferry/internal/vault"
)

// resolvedConnection is the connection a binding uses.
type resolvedConnection struct {
	conn  kf.Connection
	ready bool
}

// connectionClient resolves the binding's connection and returns its provider client.
func (r *Reconciler) connectionClient(ctx context.Context, b *kf.SecretBinding) (*vault.Client, resolvedConnection, error) {
	c, conn, err := common.ResolveConnection(ctx, r.Client, r.Registry, b.Spec.ConnectionRef, b.Namespace, nil)
	return c, resolvedConnection{conn: conn, ready: common.IsReady(conn.ConnectionStatus().Conditions)}, err
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
