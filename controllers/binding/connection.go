package binding

import (
	"context"

	"github.com/keyferry/keyferry/controllers/conditions"
	"github.com/keyferry/keyferry/controllers/resolve"

	"sigs.k8s.io/controller-runtime/pkg/event"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
	"github.com/keyferry/keyferry/internal/vault"
)

// resolvedConnection is the connection a binding uses.
type resolvedConnection struct {
	conn  kf.Connection
	ready bool
	// target is what the binding reads through it.
	target vault.Target
}

// connectionClient resolves the binding's connection by the rule every kind shares
// (resolve.Connection) and returns its provider client and what the binding reads
// through it.
func (r *Reconciler) connectionClient(ctx context.Context, b *kf.SecretBinding) (*vault.Client, resolvedConnection, error) {
	c, conn, err := resolve.Connection(ctx, r.Client, r.Registry, b.Spec.ConnectionRef, bindingUse(b))
	rc := resolvedConnection{conn: conn, ready: conditions.IsReady(conn.ConnectionStatus().Conditions)}
	if err == nil {
		rc.target = read(b).Target(conn)
	}
	return c, rc, err
}

// read is the vault environment the binding reads, with its own request if it sets one.
func read(b *kf.SecretBinding) resolve.Read {
	return resolve.Read{Vault: b.Spec.Vault, Environment: b.Spec.Environment, Request: b.Spec.Request}
}

// bindingUse is what the binding asks of its connection.
func bindingUse(b *kf.SecretBinding) resolve.Use {
	return resolve.Use{Namespace: b.Namespace, Reads: []resolve.Read{read(b)}}
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
