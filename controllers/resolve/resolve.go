// Package resolve finds the connection an object names and decides, by one rule for every
// kind that uses a connection, whether that connection serves it: the connection exists,
// a ClusterVaultConnection lends itself to the object's namespace, vault, environment and
// use (lend.go), the connection is not being deleted, suspended or broken, and its
// provider client is built. The same mistake reads the same whatever the kind.
package resolve

import (
	"context"
	"errors"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/conditions"
	"github.com/keyferry/keyferry/internal/vault"
)

// ErrClientPending marks a connection whose provider client is not built yet: right after
// a start (or a new connection) its reconciler may not have run. That takes a moment, so
// the caller looks again shortly without writing a transient status; the connection's
// first status change wakes it too.
var ErrClientPending = errors.New("connection client pending")

// ErrConnectionSuspended marks a connection whose spec.suspend is true: no request goes
// through it, and what uses it holds its last state until it resumes.
var ErrConnectionSuspended = errors.New("connection suspended")

// Held says whether err from Connection means the caller holds still for now, and why:
// pending (the client is being built; look again shortly, quietly) or suspended (no
// request until the connection resumes, which wakes the caller).
func Held(err error) (pending, suspended bool) {
	return errors.Is(err, ErrClientPending), errors.Is(err, ErrConnectionSuspended)
}

// ConnectionID keys a connection's client in the registry.
func ConnectionID(kind kf.ConnectionKind, namespace, name string) string {
	if kind == kf.ConnectionKindCluster {
		return string(kind) + "/" + name
	}
	return string(kind) + "/" + namespace + "/" + name
}

// ConnectionIDOf is ConnectionID for a connection object.
func ConnectionIDOf(c kf.Connection) string {
	return ConnectionID(c.ConnectionKind(), c.GetNamespace(), c.GetName())
}

// Connection reads the connection ref names for use and returns it with its provider
// client. The checks run in one order for every kind: found, lent (Lend), not being
// deleted, not suspended, not broken, client built. Failures about the connection are
// condition errors (ConnectionNotReady, NotAllowed), or ErrClientPending and
// ErrConnectionSuspended; API server trouble is returned as it is.
func Connection(ctx context.Context, c client.Reader, registry *vault.Registry, ref kf.ConnectionReference, use Use) (*vault.Client, kf.Connection, error) {
	kind := ref.GetKind()
	conn := kf.NewConnection(kind, use.Namespace, ref.Name)
	notReady := func(format string, args ...any) (*vault.Client, kf.Connection, error) {
		return nil, conn, conditions.TransientErr(kf.ReasonConnectionNotReady, format, args...)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(conn), conn); err != nil {
		switch {
		case !apierrors.IsNotFound(err):
			return nil, conn, err
		case kind == kf.ConnectionKindCluster:
			return notReady("%s %s not found", kind, ref.Name)
		default:
			return notReady("%s %s not found in namespace %s", kind, ref.Name, use.Namespace)
		}
	}
	if cvc, ok := conn.(*kf.ClusterVaultConnection); ok {
		if err := LendsTo(ctx, c, cvc, use); err != nil {
			return nil, conn, err
		}
	}
	if !conn.GetDeletionTimestamp().IsZero() {
		return notReady("%s %s is being deleted", kind, ref.Name)
	}
	if conn.ConnectionSpec().Suspend {
		return nil, conn, ErrConnectionSuspended
	}
	if ready := conditions.ReadyOf(conn.ConnectionStatus().Conditions); ready != nil {
		switch ready.Reason {
		case kf.ReasonCredentialsNotFound, kf.ReasonInvalidSpec:
			return notReady("%s %s: %s: %s", kind, ref.Name, ready.Reason, ready.Message)
		}
	}
	cl, ok := registry.Get(ConnectionIDOf(conn))
	if !ok {
		return nil, conn, ErrClientPending
	}
	return cl, conn, nil
}
