package v1beta1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConnectionKind is the kind of connection a binding refers to.
// +kubebuilder:validation:Enum=VaultConnection;ClusterVaultConnection
type ConnectionKind string

// Connection kinds.
const (
	ConnectionKindNamespaced ConnectionKind = "VaultConnection"
	ConnectionKindCluster    ConnectionKind = "ClusterVaultConnection"
)

// ConnectionReference names the connection a binding pulls through.
type ConnectionReference struct {
	// name of the VaultConnection (in the binding's namespace) or ClusterVaultConnection.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// kind of the connection: VaultConnection (default) or ClusterVaultConnection.
	// +optional
	// +kubebuilder:default=VaultConnection
	Kind ConnectionKind `json:"kind,omitempty"`
}

// RequestFormat is the format of a secrets response.
// +kubebuilder:validation:Enum=json;dotenv
type RequestFormat string

// Request formats.
const (
	RequestFormatJSON   RequestFormat = "json"
	RequestFormatDotenv RequestFormat = "dotenv"
)

// RequestSpec describes how to fetch an environment's secrets from a provider without a
// native secrets endpoint. {vault} and {environment} in path and body are replaced by the
// binding's values (URL-escaped in the path).
type RequestSpec struct {
	// method of the request: GET (default) or POST.
	// +optional
	// +kubebuilder:default=GET
	// +kubebuilder:validation:Enum=GET;POST
	Method string `json:"method,omitempty"`
	// path of the request below the connection's url, with an optional query, e.g.
	// /v1/config/{vault}/{environment}.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="request.path must start with /"
	Path string `json:"path"`
	// body of the request (POST), with the same placeholders; sent as application/json
	// when it looks like JSON.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	Body string `json:"body,omitempty"`
	// format of the secrets in the response: json (an object of values) or dotenv text.
	// +optional
	// +kubebuilder:default=json
	Format RequestFormat `json:"format,omitempty"`
	// dataPath is the dot-separated path to the secrets inside the JSON response, e.g.
	// data.content; empty means the whole body.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	DataPath string `json:"dataPath,omitempty"`
}

// KeySelector selects keys by regular expressions (RE2) on their names.
type KeySelector struct {
	// include keeps only the keys matching at least one of these expressions; empty keeps
	// all keys.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=256
	Include []string `json:"include,omitempty"`
	// exclude drops the keys matching any of these expressions (applied after include).
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=256
	Exclude []string `json:"exclude,omitempty"`
}

// SecretKeyName is a valid key of a Kubernetes Secret's data.
// +kubebuilder:validation:MaxLength=253
type SecretKeyName string

// CreationPolicy says who owns the target Secret.
// +kubebuilder:validation:Enum=Owner;Merge;Orphan
type CreationPolicy string

// Creation policies.
const (
	// CreationPolicyOwner: keyferry creates the Secret with the binding as controller
	// owner; deleting the binding deletes the Secret.
	CreationPolicyOwner CreationPolicy = "Owner"
	// CreationPolicyMerge: keyferry writes only its keys into a Secret someone else owns;
	// deleting the binding removes just those keys.
	CreationPolicyMerge CreationPolicy = "Merge"
	// CreationPolicyOrphan: keyferry creates the Secret without an owner; it stays when
	// the binding is deleted.
	CreationPolicyOrphan CreationPolicy = "Orphan"
)

// DecodingStrategy says how the values of a source are decoded before they are written
// (External Secrets Operator's names).
// +kubebuilder:validation:Enum=None;Base64;Base64URL;Auto
type DecodingStrategy string

// Decoding strategies.
const (
	// DecodingNone writes values as the vault holds them.
	DecodingNone DecodingStrategy = "None"
	// DecodingBase64 decodes every value as standard base64; a value that is not is
	// InvalidResponse naming its key.
	DecodingBase64 DecodingStrategy = "Base64"
	// DecodingBase64URL decodes every value as URL-safe base64 (padded or not).
	DecodingBase64URL DecodingStrategy = "Base64URL"
	// DecodingAuto decodes the values that are base64 (standard or URL-safe) and keeps
	// the others as they are.
	DecodingAuto DecodingStrategy = "Auto"
)

// SecretSource is one more vault environment a binding reads, through the binding's
// connection, merged into the Secret after spec.vault/environment and the sources before
// it (a later source wins a key).
type SecretSource struct {
	// vault names the vault (keyway: the GitHub repository owner/repo).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Vault string `json:"vault"`
	// environment is the vault environment, e.g. common.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Environment string `json:"environment"`
	// request says how to fetch this environment from a provider without a native secrets
	// endpoint; empty uses the connection's.
	// +optional
	Request *RequestSpec `json:"request,omitempty"`
	// keys selects which of this source's keys are written (without a template); default
	// all.
	// +optional
	Keys *KeySelector `json:"keys,omitempty"`
	// rename maps this source's key names to the key names written (without a template).
	// +optional
	// +kubebuilder:validation:MaxProperties=256
	// +kubebuilder:validation:XValidation:rule="self.all(k, self[k].matches('^[-._a-zA-Z0-9]+$'))",message="rename targets must be valid Secret keys (letters, digits, '-', '_' or '.')"
	Rename map[string]SecretKeyName `json:"rename,omitempty"`
	// prefix is put before each of this source's key names (after rename), also as a
	// template sees them.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^[-._a-zA-Z0-9]*$')",message="prefix may hold only letters, digits, '-', '_' and '.'"
	Prefix string `json:"prefix,omitempty"`
	// decodingStrategy decodes this source's values: None (default), Base64, Base64URL or
	// Auto. Decoded bytes are written as they are (binary included).
	// +optional
	DecodingStrategy DecodingStrategy `json:"decodingStrategy,omitempty"`
}

// TemplateAs says how a ConfigMap item is used as a template.
// +kubebuilder:validation:Enum=Values;KeysAndValues
type TemplateAs string

// Ways to use a ConfigMap item (External Secrets Operator's names).
const (
	// TemplateAsValues: the item's value is the template of the Secret key of the item's name.
	TemplateAsValues TemplateAs = "Values"
	// TemplateAsKeysAndValues: the item's value renders to a YAML mapping of Secret keys
	// to values, each written.
	TemplateAsKeysAndValues TemplateAs = "KeysAndValues"
)

// TemplateFromItem is one key of a template ConfigMap.
type TemplateFromItem struct {
	// key of the ConfigMap's data holding the template.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
	// templateAs: Values (default; the Secret key is the item's key) or KeysAndValues (the
	// template renders a YAML mapping of Secret keys to values).
	// +optional
	// +kubebuilder:default=Values
	TemplateAs TemplateAs `json:"templateAs,omitempty"`
}

// TemplateConfigMapRef names a ConfigMap of the binding's own namespace holding templates.
// It must carry the label keyferry.dev/template: "true".
type TemplateConfigMapRef struct {
	// name of the ConfigMap in the binding's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// items are the keys used as templates.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Items []TemplateFromItem `json:"items"`
}

// TemplateFrom is a source of templates.
type TemplateFrom struct {
	// configMap holds the templates.
	ConfigMap TemplateConfigMapRef `json:"configMap"`
}

// TargetTemplate renders the target Secret from the pulled values with Go templates.
type TargetTemplate struct {
	// data maps target keys to Go text/template strings over the pulled values, e.g.
	// DSN: "postgres://{{ .DB_USER }}:{{ .DB_PASS }}@db/app", with sprig's functions and
	// toYaml, fromYaml, required and filterPEM; functions that read the environment, the
	// network or the clock, or draw randomness, are refused (see the README). When set,
	// only these keys are written.
	// +optional
	// +kubebuilder:validation:MaxProperties=256
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.size() <= 253 && k.matches('^[-._a-zA-Z0-9]+$'))",message="template.data keys must be valid Secret keys (letters, digits, '-', '_' or '.')"
	Data map[string]string `json:"data,omitempty"`
	// labels added to the target Secret. Keys under keyferry.dev/, kubernetes.io/ and
	// k8s.io/ (and their subdomains) are reserved and refused.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.matches('^([^/]*\\\\.)?(keyferry\\\\.dev|kubernetes\\\\.io|k8s\\\\.io)/'))",message="template.labels may not use the reserved prefixes keyferry.dev/, kubernetes.io/ or k8s.io/ (or their subdomains)"
	Labels map[string]string `json:"labels,omitempty"`
	// annotations added to the target Secret. Keys under keyferry.dev/, kubernetes.io/ and
	// k8s.io/ (and their subdomains) are reserved and refused: they could make the API
	// server or another controller act on the Secret (a ServiceAccount token, for one).
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.matches('^([^/]*\\\\.)?(keyferry\\\\.dev|kubernetes\\\\.io|k8s\\\\.io)/'))",message="template.annotations may not use the reserved prefixes keyferry.dev/, kubernetes.io/ or k8s.io/ (or their subdomains)"
	Annotations map[string]string `json:"annotations,omitempty"`
}

// TargetSpec describes the Kubernetes Secret the secrets are written to.
type TargetSpec struct {
	// name of the Secret in the binding's namespace. Defaults to the binding's name.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="target.name must be a valid Secret name (lower-case DNS subdomain)"
	Name string `json:"name,omitempty"`
	// type of the Secret. Defaults to Opaque. Types that make the cluster mint a token
	// (kubernetes.io/service-account-token, bootstrap.kubernetes.io/token) are refused.
	// +optional
	// +kubebuilder:default=Opaque
	// +kubebuilder:validation:XValidation:rule="self != 'kubernetes.io/service-account-token' && self != 'bootstrap.kubernetes.io/token'",message="target.type may not be a token-minting type (kubernetes.io/service-account-token, bootstrap.kubernetes.io/token)"
	Type corev1.SecretType `json:"type,omitempty"`
	// creationPolicy: Owner (default; the binding owns the Secret), Merge (write only this
	// binding's keys into an existing Secret) or Orphan (create without an owner).
	// +optional
	// +kubebuilder:default=Owner
	CreationPolicy CreationPolicy `json:"creationPolicy,omitempty"`
	// template renders the Secret's data, labels and annotations with Go templates.
	// +optional
	Template *TargetTemplate `json:"template,omitempty"`
	// templateFrom reads further templates from ConfigMaps of the binding's namespace
	// labelled keyferry.dev/template: "true"; template.data wins a key over them. A
	// ConfigMap change re-renders the Secret without a provider request.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	TemplateFrom []TemplateFrom `json:"templateFrom,omitempty"`
}

// RefreshPolicy says when a binding reads its vault again.
// +kubebuilder:validation:Enum=Periodic;OnChange;CreatedOnce
type RefreshPolicy string

// Refresh policies (External Secrets Operator's semantics).
const (
	// RefreshPolicyPeriodic reads the vault every refreshInterval, on a spec change, on the
	// refresh annotation and when the target Secret drifted.
	RefreshPolicyPeriodic RefreshPolicy = "Periodic"
	// RefreshPolicyOnChange reads the vault on creation, on a spec change and on the
	// refresh annotation, never on a schedule; a Secret edited or deleted by hand is still
	// repaired.
	RefreshPolicyOnChange RefreshPolicy = "OnChange"
	// RefreshPolicyCreatedOnce writes the Secret once and never updates it afterwards
	// (neither a spec change nor the refresh annotation nor a hand edit); it is written
	// again only when it is deleted.
	RefreshPolicyCreatedOnce RefreshPolicy = "CreatedOnce"
)

// SecretBindingSpec says which secrets of which vault environment go into which Secret.
// +kubebuilder:validation:XValidation:rule="!has(self.environment) || has(self.vault)",message="vault must not be empty when environment is set (they go together)"
// +kubebuilder:validation:XValidation:rule="!has(self.vault) || has(self.environment)",message="environment must not be empty when vault is set (they go together)"
// +kubebuilder:validation:XValidation:rule="has(self.vault) || (has(self.sources) && size(self.sources) > 0)",message="set vault and environment, sources, or both"
type SecretBindingSpec struct {
	// connectionRef names the VaultConnection or ClusterVaultConnection to pull through.
	ConnectionRef ConnectionReference `json:"connectionRef"`
	// vault names the vault (keyway: the GitHub repository owner/repo): with environment,
	// the first source. It may be left out when sources names them all.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.size() > 0",message="vault must not be empty"
	Vault string `json:"vault,omitempty"`
	// environment is the vault environment, e.g. production.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.size() > 0",message="environment must not be empty"
	Environment string `json:"environment,omitempty"`
	// decodingStrategy decodes the values of vault/environment: None (default), Base64,
	// Base64URL or Auto.
	// +optional
	DecodingStrategy DecodingStrategy `json:"decodingStrategy,omitempty"`
	// sources are further vault environments read through the same connection and merged
	// in order after vault/environment: a later source wins a key. If any source fails,
	// the Secret keeps its last good data whole.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	Sources []SecretSource `json:"sources,omitempty"`
	// request says how to fetch the secrets from a provider without a native secrets
	// endpoint (every provider but keyway).
	// +optional
	Request *RequestSpec `json:"request,omitempty"`
	// keys selects which pulled keys are written; default all.
	// +optional
	Keys *KeySelector `json:"keys,omitempty"`
	// rename maps pulled key names to the key names written to the Secret.
	// +optional
	// +kubebuilder:validation:MaxProperties=256
	// +kubebuilder:validation:XValidation:rule="self.all(k, self[k].matches('^[-._a-zA-Z0-9]+$'))",message="rename targets must be valid Secret keys (letters, digits, '-', '_' or '.')"
	Rename map[string]SecretKeyName `json:"rename,omitempty"`
	// target describes the Secret written.
	// +optional
	Target TargetSpec `json:"target,omitempty"`
	// refreshInterval is how often the vault is read again (jittered). At least 10s;
	// defaults to 1h.
	// +optional
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s')",message="refreshInterval must be at least 10s"
	RefreshInterval *metav1.Duration `json:"refreshInterval,omitempty"`
	// refreshPolicy says when the vault is read again: Periodic (default: every
	// refreshInterval), OnChange (only on creation, a spec change or the
	// keyferry.dev/refresh annotation; a Secret edited or deleted by hand is still
	// repaired) or CreatedOnce (the Secret is written once and never updated; it is written
	// again only if deleted).
	// +optional
	// +kubebuilder:default=Periodic
	RefreshPolicy RefreshPolicy `json:"refreshPolicy,omitempty"`
	// suspend stops keyferry from touching the binding while true (Flux's convention): no
	// provider request, no Secret write, no drift repair, no workload restart for its
	// Secret; status keeps its last values. Setting it back to false syncs at once.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// SecretBindingStatus is the observed state of a binding.
type SecretBindingStatus struct {
	// observedGeneration is the generation that was last handled completely.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Ready says whether the target Secret holds the vault's data, with a
	// reason such as Synced, Unauthorized, RateLimited or TargetConflict.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// lastSyncTime is when the target Secret last changed or was first confirmed to match
	// the vault for this generation. Refreshes that find nothing new write nothing, this
	// field included.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`
	// nextSyncTime is when the vault is read again, as planned at the last status change
	// (or, after a failure, when it is retried). Later refreshes follow refreshInterval
	// without writing status.
	// +optional
	NextSyncTime *metav1.Time `json:"nextSyncTime,omitempty"`
	// syncedKeys is the number of keys written to the target Secret.
	// +optional
	SyncedKeys int32 `json:"syncedKeys,omitempty"`
	// retryAfter is set while the connection waits for the provider (rate limit).
	// +optional
	RetryAfter *metav1.Time `json:"retryAfter,omitempty"`
	// lastHandledRefresh echoes the last handled value of the keyferry.dev/refresh
	// annotation.
	// +optional
	LastHandledRefresh string `json:"lastHandledRefresh,omitempty"`
	// consumers is how many opted-in workloads (label keyferry.dev/restart-on-change) of the
	// namespace consume the target Secret.
	// +optional
	Consumers int32 `json:"consumers,omitempty"`
	// lastRestartTime is when keyferry last restarted a workload because this binding's
	// data that it consumes changed.
	// +optional
	LastRestartTime *metav1.Time `json:"lastRestartTime,omitempty"`
	// sources counts the keys each source gave the Secret (only when spec.sources is set;
	// the first entry is vault/environment when set).
	// +optional
	Sources []SourceStatus `json:"sources,omitempty"`
	// certificateNotAfter is when the certificate of a kubernetes.io/tls Secret expires.
	// +optional
	CertificateNotAfter *metav1.Time `json:"certificateNotAfter,omitempty"`
}

// SourceStatus is what one source gave the Secret.
type SourceStatus struct {
	Vault       string `json:"vault"`
	Environment string `json:"environment"`
	// keys is how many keys this source wrote (a key a later source also has counts for
	// the later one).
	Keys int32 `json:"keys"`
}

// SecretBinding pulls the secrets of one vault environment through a connection into a
// Kubernetes Secret and keeps it in sync.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sb,categories=keyferry
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Environment",type=string,JSONPath=`.spec.environment`
// +kubebuilder:printcolumn:name="Keys",type=integer,JSONPath=`.status.syncedKeys`
// +kubebuilder:printcolumn:name="Last Sync",type=date,JSONPath=`.status.lastSyncTime`
// +kubebuilder:printcolumn:name="Suspended",type=boolean,JSONPath=`.spec.suspend`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type SecretBinding struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says which secrets go into which Secret.
	Spec SecretBindingSpec `json:"spec"`
	// status is the observed state of the binding. Until keyferry first writes it,
	// observedGeneration 0 tells kstatus readers the object is in progress.
	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status SecretBindingStatus `json:"status,omitempty"`
}

// SecretBindingList is a list of SecretBindings.
// +kubebuilder:object:root=true
type SecretBindingList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SecretBinding `json:"items"`
}
