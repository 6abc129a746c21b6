package common

import (
	"context"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
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
