package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BindingTemplateMetadata is the metadata given to each SecretBinding a
// ClusterSecretBinding writes.
type BindingTemplateMetadata struct {
	// labels of each SecretBinding. Keys under keyferry.dev/ are keyferry's own and refused.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.matches('^([^/]*\\\\.)?keyferry\\\\.dev/'))",message="template.metadata.labels may not use the reserved prefix keyferry.dev/"
	Labels map[string]string `json:"labels,omitempty"`
	// annotations of each SecretBinding. Keys under keyferry.dev/ are keyferry's own and
	// refused (annotate the ClusterSecretBinding itself with keyferry.dev/refresh to
	// refresh every binding).
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.matches('^([^/]*\\\\.)?keyferry\\\\.dev/'))",message="template.metadata.annotations may not use the reserved prefix keyferry.dev/"
	Annotations map[string]string `json:"annotations,omitempty"`
}

// BindingTemplate is the SecretBinding written into each matching namespace.
type BindingTemplate struct {
	// metadata: labels and annotations of each SecretBinding.
	// +optional
	Metadata BindingTemplateMetadata `json:"metadata,omitempty"`
	// spec of each SecretBinding, validated as a SecretBinding's. Its connectionRef names a
	// ClusterVaultConnection (typical), or a VaultConnection each namespace must have
	// itself; the connection's namespaceSelector, allowedVaults and allowedEnvironments
	// still decide for each binding.
	Spec SecretBindingSpec `json:"spec"`
}

// ClusterSecretBindingSpec says which namespaces get which SecretBinding.
// +kubebuilder:validation:XValidation:rule="has(self.namespaceSelector) || (has(self.namespaces) && size(self.namespaces) > 0)",message="set namespaceSelector, namespaces or both"
type ClusterSecretBindingSpec struct {
	// namespaceSelector selects the namespaces that get the binding (together with those
	// listed in namespaces). An empty selector is refused: it would mean every namespace.
	// +optional
	// +kubebuilder:validation:XValidation:rule="(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",message="namespaceSelector must not be empty (an empty selector would match every namespace)"
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	// namespaces lists namespaces that get the binding by name (together with those the
	// selector matches).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespaces []string `json:"namespaces,omitempty"`
	// bindingName is the name of the SecretBinding in each namespace. Defaults to the
	// ClusterSecretBinding's name.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="bindingName must be a valid object name (lower-case DNS subdomain)"
	BindingName string `json:"bindingName,omitempty"`
	// template is the SecretBinding written into each matching namespace.
	Template BindingTemplate `json:"template"`
	// suspend stops provisioning while true (Flux's convention): bindings are neither
	// created, updated nor deleted, and stay as they are (each keeps syncing unless it is
	// suspended itself). Setting it back to false provisions at once.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// NamespaceFailure says why a namespace does not have a Ready binding.
type NamespaceFailure struct {
	// namespace that failed.
	Namespace string `json:"namespace"`
	// reason: Conflict (a SecretBinding of that name that keyferry did not create), or the
	// binding's own Ready reason.
	Reason string `json:"reason"`
	// message says more, never a secret value.
	// +optional
	Message string `json:"message,omitempty"`
}

// MaxFailedNamespaces is how many failed namespaces status lists; failedNamespaceCount
// counts them all.
const MaxFailedNamespaces = 20

// ClusterSecretBindingStatus is the observed state of a ClusterSecretBinding.
type ClusterSecretBindingStatus struct {
	// observedGeneration is the generation that was last handled completely.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Ready (every matching namespace has a Ready binding), Reconciling and
	// Stalled (kstatus).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// provisionedNamespaces is how many matching namespaces hold the binding.
	// +optional
	ProvisionedNamespaces int32 `json:"provisionedNamespaces,omitempty"`
	// readyBindings is how many of those bindings are Ready.
	// +optional
	ReadyBindings int32 `json:"readyBindings,omitempty"`
	// failedNamespaces lists up to 20 namespaces whose binding could not be provisioned
	// or is not Ready, with the reason.
	// +optional
	// +kubebuilder:validation:MaxItems=20
	FailedNamespaces []NamespaceFailure `json:"failedNamespaces,omitempty"`
	// failedNamespaceCount is how many namespaces failed in all.
	// +optional
	FailedNamespaceCount int32 `json:"failedNamespaceCount,omitempty"`
}

// ClusterSecretBinding writes the same SecretBinding into every namespace it selects and
// keeps it there as namespaces come and go. It grants nothing: each binding still goes
// through its connection's rules.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=csb,categories=keyferry
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Namespaces",type=integer,JSONPath=`.status.provisionedNamespaces`
// +kubebuilder:printcolumn:name="Ready Bindings",type=integer,JSONPath=`.status.readyBindings`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.failedNamespaceCount`
// +kubebuilder:printcolumn:name="Suspended",type=boolean,JSONPath=`.spec.suspend`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterSecretBinding struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says which namespaces get which SecretBinding.
	Spec ClusterSecretBindingSpec `json:"spec"`
	// status is the observed state. Until keyferry first writes it, observedGeneration 0
	// tells kstatus readers the object is in progress.
	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status ClusterSecretBindingStatus `json:"status,omitempty"`
}

// ClusterSecretBindingList is a list of ClusterSecretBindings.
// +kubebuilder:object:root=true
type ClusterSecretBindingList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterSecretBinding `json:"items"`
}
