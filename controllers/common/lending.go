package common

import (
	"context"
	"errors"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
	"github.com/keyferry/keyferry/internal/vault"
)

// NamespaceAllowed says whether a ClusterVaultConnection lends itself to namespace. No
// selector, or one that does not parse, allows none.
func NamespaceAllowed(ctx context.Context, c client.Reader, cvc *kf.ClusterVaultConnection, namespace string) (bool, error) {
	if cvc.Spec.NamespaceSelector == nil {
		return false, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(cvc.Spec.NamespaceSelector)
	if err != nil {
		return false, nil
	}
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, types.NamespacedName{Name: namespace}, ns); err != nil {
		return false, err
	}
	return sel.Matches(labels.Set(ns.Labels)), nil
}

// GlobsAllow says whether value matches one of patterns ({namespace} replaced by the
// object's namespace); no patterns allow everything, a malformed one matches nothing.
func GlobsAllow(patterns []string, value, namespace string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, err := path.Match(strings.ReplaceAll(p, "{namespace}", namespace), value); err == nil && ok {
			return true
		}
	}
	return false
}

// PullRequest translates a spec's request (nil: the provider's native endpoint).
func PullRequest(rq *kf.RequestSpec) *vault.PullRequest {
	if rq == nil {
		return nil
	}
	return &vault.PullRequest{Method: rq.Method, Path: rq.Path, Body: rq.Body, Format: vault.Format(rq.Format), DataPath: rq.DataPath}
}

// ErrClientPending marks a connection whose provider client is not built yet: right after
// a start (or a new connection) its reconciler may not have run. That takes a moment, so
// the caller looks again shortly without writing a transient status; the connection's
// first status change wakes it too.
var ErrClientPending = errors.New("connection client pending")

// ErrConnectionSuspended marks a connection whose spec.suspend is true: no request goes
// through it, and what uses it holds its last state until it resumes.
var ErrConnectionSuspended = errors.New("connection suspended")

// ResolveConnection reads the connection ref names for an object of namespace and returns
// it with its provider client. A ClusterVaultConnection must select the namespace, and
// lend (when not nil) may refuse it for the caller's own rules. Failures about the
// connection are condition errors (ConnectionNotReady, NotAllowed), or ErrClientPending
// and ErrConnectionSuspended; API server trouble is returned as it is.
func ResolveConnection(ctx context.Context, c client.Reader, registry *vault.Registry, ref kf.ConnectionReference, namespace string,
	lend func(*kf.ClusterVaultConnection) error) (*vault.Client, kf.Connection, error) {
	kind := ref.GetKind()
	conn := kf.NewConnection(kind, namespace, ref.Name)
	notReady := func(format string, args ...any) (*vault.Client, kf.Connection, error) {
		return nil, conn, TransientErr(kf.ReasonConnectionNotReady, format, args...)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(conn), conn); err != nil {
		switch {
		case !apierrors.IsNotFound(err):
			return nil, conn, err
		case kind == kf.ConnectionKindCluster:
			return notReady("%s %s not found", kind, ref.Name)
		default:
			return notReady("%s %s not found in namespace %s", kind, ref.Name, namespace)
		}
	}
	if cvc, ok := conn.(*kf.ClusterVaultConnection); ok {
		allowed, err := NamespaceAllowed(ctx, c, cvc, namespace)
		if err != nil {
			return nil, conn, err
		}
		if !allowed {
			return nil, conn, StalledErr(kf.ReasonNotAllowed, "%s %s does not allow namespace %s (namespaceSelector)", kind, ref.Name, namespace)
		}
		if lend != nil {
			if err := lend(cvc); err != nil {
				return nil, conn, err
			}
		}
	}
	if !conn.GetDeletionTimestamp().IsZero() {
		return notReady("%s %s is being deleted", kind, ref.Name)
	}
	if conn.ConnectionSpec().Suspend {
		return nil, conn, ErrConnectionSuspended
	}
	if ready := ReadyOf(conn.ConnectionStatus().Conditions); ready != nil {
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
