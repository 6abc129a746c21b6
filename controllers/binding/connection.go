package binding

import (
	"context"

	"github.com/keyferry/keyferry/controllers/conditions"
	"github.com/keyferry/keyferry/controllers/resolve"

	"sigs.k8s.io/controller-runtime/pkg/event"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/vault"
)

// resolvedConnection is the connection a binding uses.
type resolvedConnection struct {
	conn  kf.Connection
	ready bool
}

// connectionClient resolves the binding's connection by the rule every kind shares
// (resolve.Connection) and returns its provider client.
func (r *Reconciler) connectionClient(ctx context.Context, b *kf.SecretBinding, srcs []bindingSource) (*vault.Client, resolvedConnection, error) {
	c, conn, err := resolve.Connection(ctx, r.Client, r.Registry, b.Spec.ConnectionRef, bindingUse(b, srcs))
	return c, resolvedConnection{conn: conn, ready: conditions.IsReady(conn.ConnectionStatus().Conditions)}, err
}

// bindingUse is what the binding asks of its connection: every source it reads.
func bindingUse(b *kf.SecretBinding, srcs []bindingSource) resolve.Use {
	use := resolve.Use{Namespace: b.Namespace}
	for _, s := range srcs {
		use.Reads = append(use.Reads, s.read)
	}
	return use
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
