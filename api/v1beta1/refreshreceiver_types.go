package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReceiverType is how a RefreshReceiver authenticates its callers.
// +kubebuilder:validation:Enum=generic-hmac;github;token
type ReceiverType string

// Receiver types.
const (
	// ReceiverTypeGenericHMAC: the body is signed with HMAC-SHA256 over
	// "<X-Timestamp>.<body>" in X-Signature: sha256=<hex>; X-Timestamp (Unix seconds) must
	// be within 5 minutes of the manager's clock.
	ReceiverTypeGenericHMAC ReceiverType = "generic-hmac"
	// ReceiverTypeGitHub: a GitHub repository or organization webhook with this secret
	// (X-Hub-Signature-256; each X-GitHub-Delivery is accepted once).
	ReceiverTypeGitHub ReceiverType = "github"
	// ReceiverTypeToken: Authorization: Bearer <secret>, for callers that cannot sign.
	ReceiverTypeToken ReceiverType = "token"
)

// MinReceiverSecretLength is the shortest shared secret a receiver accepts: a receiver
// can be reached from the internet, a short secret can be guessed.
const MinReceiverSecretLength = 16

// ReceiverSecretReference names the key of a Secret in the receiver's namespace that
// holds the shared secret.
type ReceiverSecretReference struct {
	// name of the Secret, in the receiver's namespace. It must carry the label
	// keyferry.dev/credentials: "true".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// key in the Secret's data holding the shared secret (at least 16 bytes); default token.
	// +optional
	// +kubebuilder:default=token
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}

// RefreshReceiverSpec says who may ask for a refresh and of what.
type RefreshReceiverSpec struct {
	// type is how callers authenticate: generic-hmac, github or token.
	Type ReceiverType `json:"type"`
	// secretRef names the shared secret (the HMAC key or the token). Changing it changes
	// status.webhookPath: the old path answers 404 from then on.
	SecretRef ReceiverSecretReference `json:"secretRef"`
	// selector picks the SecretBindings and SecretPushes of the receiver's own namespace
	// that a valid hook refreshes ({} selects them all). It never reaches another
	// namespace.
	Selector metav1.LabelSelector `json:"selector"`
	// suspend makes valid hooks refresh nothing (they are still checked and counted).
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// ReceiverRound is what the last hook that asked for a refresh caused.
type ReceiverRound struct {
	// time the bindings were marked for refresh.
	Time metav1.Time `json:"time"`
	// refreshed is how many SecretBindings and SecretPushes were marked.
	Refreshed int32 `json:"refreshed"`
}

// RefreshReceiverStatus is the observed state of a RefreshReceiver.
type RefreshReceiverStatus struct {
	// observedGeneration is the generation that was last handled completely.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Ready says whether hooks to webhookPath are answered, with a reason
	// such as Listening, ListenerDisabled, CredentialsNotFound or InvalidSpec.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// webhookPath is where hooks are sent on the manager's webhook listener:
	// /hook/<sha256 of the namespace, name and secret>. It reveals none of them.
	// +optional
	WebhookPath string `json:"webhookPath,omitempty"`
	// lastHandled is the last refresh round a valid hook caused.
	// +optional
	LastHandled *ReceiverRound `json:"lastHandled,omitempty"`
}

// RefreshReceiver lets a caller outside the cluster (CI, a vault's webhook, GitHub) ask
// keyferry to refresh selected bindings of its namespace now, with one signed request.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rr,categories=keyferry
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Last Handled",type=date,JSONPath=`.status.lastHandled.time`
// +kubebuilder:printcolumn:name="Refreshed",type=integer,JSONPath=`.status.lastHandled.refreshed`
// +kubebuilder:printcolumn:name="Path",type=string,JSONPath=`.status.webhookPath`,priority=1
// +kubebuilder:printcolumn:name="Suspended",type=boolean,JSONPath=`.spec.suspend`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RefreshReceiver struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says who may ask and what is refreshed.
	Spec RefreshReceiverSpec `json:"spec"`
	// status is the observed state. Until keyferry first writes it, observedGeneration 0
	// tells kstatus readers the object is in progress.
	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status RefreshReceiverStatus `json:"status,omitempty"`
}

// RefreshReceiverList is a list of RefreshReceivers.
// +kubebuilder:object:root=true
type RefreshReceiverList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RefreshReceiver `json:"items"`
}
