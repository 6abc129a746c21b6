package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// UpdatePolicy says whether a push overwrites a key the vault already has.
// +kubebuilder:validation:Enum=Replace;IfNotExists
type UpdatePolicy string

// Update policies.
const (
	// UpdatePolicyReplace: the vault gets the Secret's value (unless someone else changed
	// the key since keyferry pushed it: see conflictPolicy).
	UpdatePolicyReplace UpdatePolicy = "Replace"
	// UpdatePolicyIfNotExists: a key that exists in the vault is never overwritten.
	UpdatePolicyIfNotExists UpdatePolicy = "IfNotExists"
)

// DeletionPolicy says what happens to pushed keys when the SecretPush is deleted.
// +kubebuilder:validation:Enum=Keep;Delete
type DeletionPolicy string

// Deletion policies.
const (
	// DeletionPolicyKeep leaves the pushed keys in the vault.
	DeletionPolicyKeep DeletionPolicy = "Keep"
	// DeletionPolicyDelete removes the keys it pushed and still owns (their value in the
	// vault is still the one keyferry pushed); needs the delete:secrets scope on Keyway.
	DeletionPolicyDelete DeletionPolicy = "Delete"
)

// ConflictPolicy says what a push does with a key someone else changed in the vault since
// keyferry pushed it.
// +kubebuilder:validation:Enum=Keep;Overwrite
type ConflictPolicy string

// Conflict policies.
const (
	// ConflictPolicyKeep keeps the vault's value and reports a Conflict naming the key.
	ConflictPolicyKeep ConflictPolicy = "Keep"
	// ConflictPolicyOverwrite writes the Secret's value over it.
	ConflictPolicyOverwrite ConflictPolicy = "Overwrite"
)

// PushSource names the Secret whose keys are pushed.
type PushSource struct {
	// name of a Secret in the SecretPush's namespace. It must carry the label
	// keyferry.dev/push: "true": creating a SecretPush is not a way to send any Secret of
	// the namespace out of the cluster.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// keys selects which keys of the Secret are pushed; default all.
	// +optional
	Keys *KeySelector `json:"keys,omitempty"`
	// rename maps Secret keys to the key names written to the vault (Keyway wants
	// ^[A-Z][A-Z0-9_]*$: rename fixes keys such as tls.crt).
	// +optional
	// +kubebuilder:validation:MaxProperties=256
	// +kubebuilder:validation:XValidation:rule="self.all(k, self[k].size() > 0 && self[k].size() <= 256)",message="rename targets must be between 1 and 256 characters"
	Rename map[string]string `json:"rename,omitempty"`
}

// SecretPushSpec says which keys of which Secret go into which vault environment.
type SecretPushSpec struct {
	// connectionRef names the VaultConnection of the namespace, or a ClusterVaultConnection
	// that sets allowPush: true (its namespaceSelector, allowedVaults and
	// allowedEnvironments apply).
	ConnectionRef ConnectionReference `json:"connectionRef"`
	// vault names the vault (keyway: the GitHub repository owner/repo).
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.size() > 0",message="vault must not be empty"
	Vault string `json:"vault"`
	// environment is the vault environment written, e.g. production.
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.size() > 0",message="environment must not be empty"
	Environment string `json:"environment"`
	// source is the Secret pushed.
	Source PushSource `json:"source"`
	// updatePolicy: Replace (default: the vault gets the Secret's value) or IfNotExists
	// (a key that exists in the vault is never overwritten).
	// +optional
	// +kubebuilder:default=Replace
	UpdatePolicy UpdatePolicy `json:"updatePolicy,omitempty"`
	// deletionPolicy: Keep (default: pushed keys stay in the vault) or Delete (deleting the
	// SecretPush removes the keys it pushed whose value is still the one it pushed).
	// +optional
	// +kubebuilder:default=Keep
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
	// conflictPolicy: Keep (default: a key someone else changed in the vault since keyferry
	// pushed it is left as it is, reason Conflict) or Overwrite.
	// +optional
	// +kubebuilder:default=Keep
	ConflictPolicy ConflictPolicy `json:"conflictPolicy,omitempty"`
	// refreshInterval is how often the vault is checked again (a change of the Secret is
	// pushed within seconds anyway). At least 10s; defaults to 1h.
	// +optional
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s')",message="refreshInterval must be at least 10s"
	RefreshInterval *metav1.Duration `json:"refreshInterval,omitempty"`
	// suspend stops every push while true (no request, status kept); setting it back to
	// false pushes at once.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// PushedKey is a key keyferry wrote (or found already holding the Secret's value) in the
// vault, with a keyed digest of that value (never the value): a later push compares it with
// the vault's value to see whether someone else changed the key meanwhile.
type PushedKey struct {
	// key in the vault.
	Key string `json:"key"`
	// digest is a keyed HMAC of the value keyferry pushed (per installation).
	Digest string `json:"digest"`
}

// SecretPushStatus is the observed state of a SecretPush.
type SecretPushStatus struct {
	// observedGeneration is the generation that was last handled completely.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Ready says whether the vault holds the Secret's keys, with a reason such
	// as Synced, Conflict, Unauthorized, Forbidden, RateLimited or InvalidSpec.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// pushedKeys is how many keys the vault holds as pushed.
	// +optional
	PushedKeys int32 `json:"pushedKeys,omitempty"`
	// lastPushTime is when keyferry last wrote to the vault.
	// +optional
	LastPushTime *metav1.Time `json:"lastPushTime,omitempty"`
	// retryAfter is set while the connection waits for the provider (rate limit).
	// +optional
	RetryAfter *metav1.Time `json:"retryAfter,omitempty"`
	// pushed lists the keys keyferry owns in the vault and a keyed digest of each value.
	// +optional
	// +listType=map
	// +listMapKey=key
	// +kubebuilder:validation:MaxItems=1000
	Pushed []PushedKey `json:"pushed,omitempty"`
	// lastHandledRefresh echoes the last handled value of the keyferry.dev/refresh
	// annotation.
	// +optional
	LastHandledRefresh string `json:"lastHandledRefresh,omitempty"`
}

// SecretPush publishes keys of a Kubernetes Secret into a vault environment, writing only
// the keys whose value differs and never a key someone else changed since.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sp,categories=keyferry
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Environment",type=string,JSONPath=`.spec.environment`
// +kubebuilder:printcolumn:name="Keys",type=integer,JSONPath=`.status.pushedKeys`
// +kubebuilder:printcolumn:name="Last Push",type=date,JSONPath=`.status.lastPushTime`
// +kubebuilder:printcolumn:name="Suspended",type=boolean,JSONPath=`.spec.suspend`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type SecretPush struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says which keys go where.
	Spec SecretPushSpec `json:"spec"`
	// status is the observed state. Until keyferry first writes it, observedGeneration 0
	// tells kstatus readers the object is in progress.
	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status SecretPushStatus `json:"status,omitempty"`
}

// SecretPushList is a list of SecretPushes.
// +kubebuilder:object:root=true
type SecretPushList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SecretPush `json:"items"`
}
