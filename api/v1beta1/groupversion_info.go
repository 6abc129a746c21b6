// Package v1beta1 contains the keyferry.dev/v1beta1 API: vault connections and secret
// bindings.
// +kubebuilder:object:generate=true
// +groupName=keyferry.dev
package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of every kind in this package.
	GroupVersion = schema.GroupVersion{Group: "keyferry.dev", Version: "v1beta1"}

	schemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds this package's kinds to a runtime.Scheme.
	AddToScheme = schemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&VaultConnection{}, &VaultConnectionList{},
		&ClusterVaultConnection{}, &ClusterVaultConnectionList{},
		&SecretBinding{}, &SecretBindingList{},
		&ClusterSecretBinding{}, &ClusterSecretBindingList{},
		&SecretPush{}, &SecretPushList{},
		&RefreshReceiver{}, &RefreshReceiverList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

// CRD names one of this group's CustomResourceDefinitions (config/crd/bases holds them).
type CRD struct{ Name, Kind string }

// CRDs are this group's CustomResourceDefinitions.
var CRDs = []CRD{
	{"vaultconnections.keyferry.dev", "VaultConnection"}, {"clustervaultconnections.keyferry.dev", "ClusterVaultConnection"},
	{"secretbindings.keyferry.dev", "SecretBinding"}, {"clustersecretbindings.keyferry.dev", "ClusterSecretBinding"},
	{"secretpushes.keyferry.dev", "SecretPush"}, {"refreshreceivers.keyferry.dev", "RefreshReceiver"},
}

// CRDNames lists the names of CRDs.
func CRDNames() []string {
	out := make([]string, len(CRDs))
	for i, c := range CRDs {
		out[i] = c.Name
	}
	return out
}
