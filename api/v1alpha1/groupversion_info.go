// Package v1alpha1 contains the keyferry.dev/v1alpha1 API: vault connections and secret
// bindings.
// +kubebuilder:object:generate=true
// +groupName=keyferry.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of every kind in this package.
	GroupVersion = schema.GroupVersion{Group: "keyferry.dev", Version: "v1alpha1"}

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
