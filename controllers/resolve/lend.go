package resolve

import (
	"context"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/conditions"
	"github.com/keyferry/keyferry/internal/vault"
)

// Use is what an object asks of a connection: to read (or, Push, to write) one or more
// vault environments for its namespace, with its own request or the connection's.
type Use struct {
	Namespace string
	// Reads are the vault environments the object reads or writes.
	Reads []Read
	// Push: the object writes into the vault (a SecretPush).
	Push bool
}

// Read is one vault environment an object uses.
type Read struct {
	Vault, Environment string
	// Request is the object's own request for it; nil uses the connection's.
	Request *kf.RequestSpec
}

// LendsTo applies a ClusterVaultConnection's lending rule to use, in this order:
// namespaceSelector, allowPush (pushes), then for each read allowedVaults,
// allowedEnvironments and allowBindingRequest. A refusal is NotAllowed (Stalled) with one
// message per mistake, whatever kind asked.
func LendsTo(ctx context.Context, c client.Reader, cvc *kf.ClusterVaultConnection, use Use) error {
	allowed, err := NamespaceAllowed(ctx, c, cvc, use.Namespace)
	if err != nil {
		return err
	}
	if !allowed {
		return conditions.StalledErr(kf.ReasonNotAllowed, "%s %s does not allow namespace %s (namespaceSelector)", kf.ConnectionKindCluster, cvc.Name, use.Namespace)
	}
	return Lend(cvc, use)
}

// Lend is LendsTo past the namespace selector: what the ClusterVaultConnection's own
// spec allows.
func Lend(cvc *kf.ClusterVaultConnection, use Use) error {
	lend := cvc.Spec
	if use.Push && !lend.AllowPush {
		return conditions.StalledErr(kf.ReasonNotAllowed, "ClusterVaultConnection %s does not lend itself for pushes (allowPush)", cvc.Name)
	}
	for _, rd := range use.Reads {
		switch {
		case !GlobsAllow(lend.AllowedVaults, rd.Vault, use.Namespace):
			return conditions.StalledErr(kf.ReasonNotAllowed, "ClusterVaultConnection %s does not lend vault %q to namespace %s (allowedVaults)", cvc.Name, rd.Vault, use.Namespace)
		case !GlobsAllow(lend.AllowedEnvironments, rd.Environment, use.Namespace):
			return conditions.StalledErr(kf.ReasonNotAllowed, "ClusterVaultConnection %s does not lend environment %q to namespace %s (allowedEnvironments)", cvc.Name, rd.Environment, use.Namespace)
		case rd.Request != nil && !lend.AllowBindingRequest:
			return conditions.StalledErr(kf.ReasonNotAllowed, "ClusterVaultConnection %s does not let bindings set their own request (allowBindingRequest); remove spec.request to use the connection's", cvc.Name)
		}
	}
	return nil
}

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

// Target is what rd reads through conn: its own request, else the connection's.
func (rd Read) Target(conn kf.Connection) vault.Target {
	rq := rd.Request
	if rq == nil {
		rq = conn.ConnectionSpec().Request
	}
	return vault.Target{Vault: rd.Vault, Environment: rd.Environment, Request: PullRequest(rq)}
}
