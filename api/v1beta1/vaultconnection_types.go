package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Provider names a vault vendor preset.
// +kubebuilder:validation:Enum=keyway;keystash;stash;knowledgestack;keymint;http
type Provider string

// Provider presets.
const (
	ProviderKeyway         Provider = "keyway"
	ProviderKeystash       Provider = "keystash"
	ProviderStash          Provider = "stash"
	ProviderKnowledgeStack Provider = "knowledgestack"
	ProviderKeymint        Provider = "keymint"
	ProviderHTTP           Provider = "http"
)

// LoginEncoding is how a login request carries its credentials.
// +kubebuilder:validation:Enum=form;json
type LoginEncoding string

// Login encodings.
const (
	LoginEncodingForm LoginEncoding = "form"
	LoginEncodingJSON LoginEncoding = "json"
)

// SecretKeyReference names one key of a Kubernetes Secret.
type SecretKeyReference struct {
	// name of the Secret. For a VaultConnection it is in the connection's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// namespace of the Secret. Required on a ClusterVaultConnection, ignored on a
	// VaultConnection (which always reads its own namespace).
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
	// key in the Secret's data whose value is used.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}

// SecretReference names a whole Kubernetes Secret.
type SecretReference struct {
	// name of the Secret. For a VaultConnection it is in the connection's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// namespace of the Secret. Required on a ClusterVaultConnection, ignored on a
	// VaultConnection (which always reads its own namespace).
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
}

// BearerAuth sends a static token as `Authorization: Bearer <token>`.
type BearerAuth struct {
	// secretRef names the Secret key holding the token or API key.
	SecretRef SecretKeyReference `json:"secretRef"`
	// rotation makes keyferry replace the API key on a schedule through the provider's
	// key API (keyway, knowledgestack), writing each new key into the Secret, which must
	// be labelled keyferry.dev/rotate: "true".
	// +optional
	Rotation *KeyRotation `json:"rotation,omitempty"`
}

// KeyRotation says when and how keyferry replaces the API key it holds: create a new key,
// write it into the credential Secret, verify it with one read, revoke the old key.
// +kubebuilder:validation:XValidation:rule="!has(self.scopes) || ('admin:api-keys' in self.scopes && 'read:secrets' in self.scopes)",message="rotation.scopes must hold admin:api-keys (to rotate again) and read:secrets (to pull)"
type KeyRotation struct {
	// every is the life of a key before keyferry replaces it, counted from the key's
	// creation. Default 720h (30 days); at least 1h (the operator may set a lower floor
	// for tests only).
	// +optional
	// +kubebuilder:default="720h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="rotation.every must be positive"
	Every *metav1.Duration `json:"every,omitempty"`
	// expiresInDays gives each new key an expiry (keyway only, 1 to 365): a key keyferry
	// could not rotate then lapses by itself.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=365
	ExpiresInDays *int32 `json:"expiresInDays,omitempty"`
	// keyName is the name of the keys keyferry creates, as the provider's dashboard shows
	// it. Default keyferry-<namespace>-<name> (keyferry-<name> for a
	// ClusterVaultConnection). Keys of this name that are neither the current nor the
	// previous key are leftovers of an interrupted rotation and are revoked.
	// +optional
	// +kubebuilder:validation:MaxLength=100
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9._-]*$`
	KeyName string `json:"keyName,omitempty"`
	// scopes of the new keys (keyway). Default: the scopes of the current key as the API
	// reports them.
	// +optional
	// +kubebuilder:validation:MaxItems=4
	// +listType=set
	Scopes []KeywayScope `json:"scopes,omitempty"`
}

// KeywayScope is a Keyway API key scope.
// +kubebuilder:validation:Enum="read:secrets";"write:secrets";"delete:secrets";"admin:api-keys"
type KeywayScope string

// APIKeyAuth sends a static API key in a named request header.
type APIKeyAuth struct {
	// header is the HTTP header that carries the key, e.g. X-Stash-Api-Key. Defaults to
	// the provider's header (stash: X-Stash-Api-Key); required for provider http.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9-]+$`
	Header string `json:"header,omitempty"`
	// secretRef names the Secret key holding the API key.
	SecretRef SecretKeyReference `json:"secretRef"`
	// rotation makes keyferry replace the API key on a schedule (see bearer.rotation).
	// +optional
	Rotation *KeyRotation `json:"rotation,omitempty"`
}

// LoginAuth exchanges a username and password for a session token, renews it before it
// expires and signs it out when the connection is deleted or its credentials change.
// Fields left empty take the provider's defaults.
type LoginAuth struct {
	// path of the login endpoint, e.g. /login (keystash) or /v1/auth/pw/signin
	// (knowledgestack).
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Path string `json:"path,omitempty"`
	// encoding of the login request body: form (application/x-www-form-urlencoded) or json.
	// +optional
	Encoding LoginEncoding `json:"encoding,omitempty"`
	// secretRef names the Secret holding the credentials under the keys `username` and
	// `password`.
	SecretRef SecretReference `json:"secretRef"`
	// usernameField is the request field that carries the username, e.g. username
	// (keystash) or email (knowledgestack).
	// +optional
	// +kubebuilder:validation:MaxLength=128
	UsernameField string `json:"usernameField,omitempty"`
	// passwordField is the request field that carries the password. Defaults to password.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	PasswordField string `json:"passwordField,omitempty"`
	// tokenField is the field of the JSON login response that holds the token, e.g. token
	// (keystash) or access_token (knowledgestack).
	// +optional
	// +kubebuilder:validation:MaxLength=128
	TokenField string `json:"tokenField,omitempty"`
	// tokenCookie takes the token from the Set-Cookie of this name instead (or when the
	// JSON field is absent), e.g. ks_uat (knowledgestack).
	// +optional
	// +kubebuilder:validation:MaxLength=128
	TokenCookie string `json:"tokenCookie,omitempty"`
	// tokenTTL is how long a token lives when neither its JWT exp claim nor an expires_in
	// field says. Keystash tokens live 1h.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s')",message="tokenTTL must be at least 10s"
	TokenTTL *metav1.Duration `json:"tokenTTL,omitempty"`
	// refreshPath, when set, trades the current token for a fresh one before it expires
	// (knowledgestack: /v1/auth/uat) instead of logging in again.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	RefreshPath string `json:"refreshPath,omitempty"`
	// signoutPath, when set, is called to invalidate the session when the connection is
	// deleted or its credentials change (knowledgestack: /v1/auth/signout).
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	SignoutPath string `json:"signoutPath,omitempty"`
}

// AuthSpec says how keyferry authenticates: exactly one of bearer, apiKey or login.
// +kubebuilder:validation:XValidation:rule="[has(self.bearer), has(self.apiKey), has(self.login)].filter(x, x).size() == 1",message="auth must set exactly one of bearer, apiKey or login"
type AuthSpec struct {
	// bearer sends a static token as `Authorization: Bearer <token>` (keyway tokens and API
	// keys, knowledgestack API keys, keymint at_ tokens).
	// +optional
	Bearer *BearerAuth `json:"bearer,omitempty"`
	// apiKey sends a static key in a named header (stash: X-Stash-Api-Key).
	// +optional
	APIKey *APIKeyAuth `json:"apiKey,omitempty"`
	// login exchanges a username and password for a session token (keystash,
	// knowledgestack).
	// +optional
	Login *LoginAuth `json:"login,omitempty"`
}

// RateLimit is a client-side request budget: at most requests per period.
type RateLimit struct {
	// requests allowed per period, at most 100000.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +kubebuilder:validation:XValidation:rule="self > 0",message="rateLimit.requests must be positive"
	Requests int32 `json:"requests"`
	// period over which requests are counted, e.g. 15m or 1s.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="rateLimit.period must be positive"
	Period metav1.Duration `json:"period"`
}

// PushRequestSpec is the request that writes one key (http provider).
type PushRequestSpec struct {
	// method of the request: PUT (default), POST or PATCH.
	// +optional
	// +kubebuilder:default=PUT
	// +kubebuilder:validation:Enum=PUT;POST;PATCH
	Method string `json:"method,omitempty"`
	// path below the connection's url, with an optional query, e.g.
	// /v1/config/{vault}/{environment}/{key}.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="push.path must start with /"
	Path string `json:"path"`
	// body of the request, e.g. {"value": "{value}"}; sent as application/json when it
	// looks like JSON.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	Body string `json:"body,omitempty"`
}

// VaultConnectionSpec says where a vault is and how to authenticate to it.
// +kubebuilder:validation:XValidation:rule="!has(self.url) || self.url.startsWith('https://') || (self.url.startsWith('http://') && has(self.allowInsecureHTTP) && self.allowInsecureHTTP)",message="url must start with https:// (http:// only with allowInsecureHTTP: true)"
// +kubebuilder:validation:XValidation:rule="self.provider != 'http' || has(self.url)",message="url is required for provider http"
// +kubebuilder:validation:XValidation:rule="self.provider != 'http' || !has(self.auth.apiKey) || has(self.auth.apiKey.header)",message="auth.apiKey.header is required for provider http"
// +kubebuilder:validation:XValidation:rule="self.provider != 'http' || !has(self.auth.login) || (has(self.auth.login.path) && has(self.auth.login.encoding))",message="auth.login.path and auth.login.encoding are required for provider http"
// +kubebuilder:validation:XValidation:rule="self.provider in ['keyway', 'knowledgestack'] || ((!has(self.auth.bearer) || !has(self.auth.bearer.rotation)) && (!has(self.auth.apiKey) || !has(self.auth.apiKey.rotation)))",message="auth rotation needs a provider with a documented key API: keyway or knowledgestack"
// +kubebuilder:validation:XValidation:rule="self.provider == 'keyway' || ((!has(self.auth.bearer) || !has(self.auth.bearer.rotation) || (!has(self.auth.bearer.rotation.scopes) && !has(self.auth.bearer.rotation.expiresInDays))) && (!has(self.auth.apiKey) || !has(self.auth.apiKey.rotation) || (!has(self.auth.apiKey.rotation.scopes) && !has(self.auth.apiKey.rotation.expiresInDays))))",message="rotation.scopes and rotation.expiresInDays are keyway's: knowledgestack keys have neither"
type VaultConnectionSpec struct {
	// provider is the vendor preset: default URL, auth shape, error format, rate-limit
	// headers and budget. http is the generic provider where everything is explicit.
	Provider Provider `json:"provider"`
	// url is the API base URL. Defaults to the provider's public API (keyway:
	// https://api.keyway.sh, keystash: https://app.keystash.io, stash: https://api.stash.gg,
	// knowledgestack: https://api.knowledgestack.ai, keymint: https://api.keymint.dev);
	// required for http.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://[^\s/$.?#][^\s]*$`
	URL string `json:"url,omitempty"`
	// allowInsecureHTTP permits a plain http:// url. Only for local development: tokens
	// and secrets then cross the network unencrypted.
	// +optional
	AllowInsecureHTTP bool `json:"allowInsecureHTTP,omitempty"`
	// caBundleSecretRef names a Secret key holding PEM certificates trusted in addition
	// to the system roots.
	// +optional
	CABundleSecretRef *SecretKeyReference `json:"caBundleSecretRef,omitempty"`
	// auth says how to authenticate: exactly one of bearer, apiKey or login.
	Auth AuthSpec `json:"auth"`
	// rateLimit is the client-side request budget shared by every binding using this
	// connection. Defaults to the provider's documented limit (keyway: 100 per 15m,
	// keystash: 5 per 1s).
	// +optional
	RateLimit *RateLimit `json:"rateLimit,omitempty"`
	// request is the request its bindings use to read an environment when they set none:
	// the connection's owner, not each binding, decides the endpoint. Same fields and
	// placeholders as a binding's request. Without it, bindings use the provider's native
	// endpoint (keyway) or their own request.
	// +optional
	Request *RequestSpec `json:"request,omitempty"`
	// requestTimeout bounds every request to the provider. Defaults to 10s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s') && duration(self) <= duration('5m')",message="requestTimeout must be between 0s (exclusive) and 5m"
	RequestTimeout *metav1.Duration `json:"requestTimeout,omitempty"`
	// push is how SecretPushes write one key for the http provider: method, path and body
	// with the placeholders {vault}, {environment}, {key} and {value} (JSON-escaped in a
	// JSON body), one request per changed key. Other providers need none (keyway) or have
	// no documented write API.
	// +optional
	Push *PushRequestSpec `json:"push,omitempty"`
	// suspend stops every request to the provider through this connection while true
	// (Flux's convention): it neither logs in nor refreshes its session, and its bindings
	// hold their last Secret and status without pulling. Setting it back to false resumes
	// at once.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
	// credentialExpiryWarning is how long before a credential's known lapse (a Keyway key's
	// expiresAt, a bearer JWT's exp) the CredentialsHealthy condition turns False with
	// CredentialExpiring and a Warning Event is sent. Default 336h (14 days).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	CredentialExpiryWarning *metav1.Duration `json:"credentialExpiryWarning,omitempty"`
	// maxCredentialAge, when set, turns CredentialsHealthy False with CredentialTooOld once
	// the credential Secret's data is older than this (Keymint advises 90 days: 2160h), for
	// credentials keyferry cannot rotate.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	MaxCredentialAge *metav1.Duration `json:"maxCredentialAge,omitempty"`
}

// RotationPhase is where a key rotation stands.
// +kubebuilder:validation:Enum=Idle;Rotating;Revoking;Stopped
type RotationPhase string

// Rotation phases.
const (
	// RotationIdle: the current key serves; the next rotation is at nextRotation.
	RotationIdle RotationPhase = "Idle"
	// RotationRotating: a new key was created and written beside the previous one; it
	// serves once one read verified it.
	RotationRotating RotationPhase = "Rotating"
	// RotationRevoking: the new key serves; the previous key is being revoked.
	RotationRevoking RotationPhase = "Revoking"
	// RotationStopped: the last rotation failed in a way retrying will not fix (lastError
	// says why); the current key still serves. A change of spec, of the Secret or of the
	// rotate-now annotation starts again.
	RotationStopped RotationPhase = "Stopped"
)

// RotationStatus is the state of a connection's key rotation. The keys themselves live
// only in the credential Secret; this names them by id and prefix.
type RotationStatus struct {
	// phase of the rotation.
	// +optional
	Phase RotationPhase `json:"phase,omitempty"`
	// currentKeyID is the provider's id of the key that serves.
	// +optional
	CurrentKeyID string `json:"currentKeyID,omitempty"`
	// currentKeyPrefix is the part of the current key the provider shows (keyway: its
	// first 16 characters), to recognise it in a dashboard.
	// +optional
	CurrentKeyPrefix string `json:"currentKeyPrefix,omitempty"`
	// previousKeyID is the key being retired while phase is Rotating or Revoking.
	// +optional
	PreviousKeyID string `json:"previousKeyID,omitempty"`
	// createdAt is when the current key was created.
	// +optional
	CreatedAt *metav1.Time `json:"createdAt,omitempty"`
	// expiresAt is when the current key lapses, if the provider says.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
	// nextRotation is when keyferry replaces the current key.
	// +optional
	NextRotation *metav1.Time `json:"nextRotation,omitempty"`
	// lastRotationTime is when a rotation last completed.
	// +optional
	LastRotationTime *metav1.Time `json:"lastRotationTime,omitempty"`
	// lastError is why the last rotation step failed; empty after a success.
	// +optional
	LastError string `json:"lastError,omitempty"`
	// lastErrorReason is the condition reason of a stopped rotation (Forbidden,
	// NotAllowed, Conflict, RotationFailed, InvalidSpec).
	// +optional
	LastErrorReason string `json:"lastErrorReason,omitempty"`
	// lastHandledRotateNow echoes the keyferry.dev/rotate-now annotation value whose
	// rotation has ended (done or stopped).
	// +optional
	LastHandledRotateNow string `json:"lastHandledRotateNow,omitempty"`
}

// VaultConnectionStatus is the observed state of a connection.
type VaultConnectionStatus struct {
	// observedGeneration is the generation whose spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Ready says whether the connection can authenticate, with a reason such
	// as Authenticated, Unauthorized, Forbidden, RateLimited or ProviderUnavailable.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// authenticatedTime is when the current session token was obtained (login auth).
	// +optional
	AuthenticatedTime *metav1.Time `json:"authenticatedTime,omitempty"`
	// tokenExpiresAt is when the current session token expires (login auth).
	// +optional
	TokenExpiresAt *metav1.Time `json:"tokenExpiresAt,omitempty"`
	// retryAfter is set while the provider asked keyferry to wait (Retry-After, an
	// exhausted rate limit) or the client-side budget is spent: no request leaves before.
	// +optional
	RetryAfter *metav1.Time `json:"retryAfter,omitempty"`
	// credentialExpiresAt is when the credential lapses, where that is known (a Keyway
	// key's expiresAt, a bearer JWT's exp claim).
	// +optional
	CredentialExpiresAt *metav1.Time `json:"credentialExpiresAt,omitempty"`
	// credentialChangedAt is when the credential Secret's data last changed, as far as the
	// API server records it (keyferry's own rotation, else the Secret's managed fields).
	// +optional
	CredentialChangedAt *metav1.Time `json:"credentialChangedAt,omitempty"`
	// credentialAge is the age of the credential in whole days (credentialChangedAt to
	// now), so status changes at most once a day.
	// +optional
	CredentialAge *metav1.Duration `json:"credentialAge,omitempty"`
	// rotation is the state of the key rotation (auth.bearer.rotation or apiKey.rotation).
	// +optional
	Rotation *RotationStatus `json:"rotation,omitempty"`
}

// VaultConnection says where a vault is and how to authenticate to it. SecretBindings in
// the same namespace use it.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=vc,categories=keyferry
// +kubebuilder:printcolumn:name="Provider",type=string,JSONPath=`.spec.provider`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Suspended",type=boolean,JSONPath=`.spec.suspend`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type VaultConnection struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says where the vault is and how to authenticate.
	Spec VaultConnectionSpec `json:"spec"`
	// status is the observed state of the connection. Until keyferry first writes it,
	// observedGeneration 0 tells kstatus readers the object is in progress.
	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status VaultConnectionStatus `json:"status,omitempty"`
}

// VaultConnectionList is a list of VaultConnections.
// +kubebuilder:object:root=true
type VaultConnectionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []VaultConnection `json:"items"`
}

// ClusterVaultConnectionSpec is a VaultConnectionSpec usable from several namespaces.
// +kubebuilder:validation:XValidation:rule="(!has(self.auth.bearer) || has(self.auth.bearer.secretRef.__namespace__)) && (!has(self.auth.apiKey) || has(self.auth.apiKey.secretRef.__namespace__)) && (!has(self.auth.login) || has(self.auth.login.secretRef.__namespace__)) && (!has(self.caBundleSecretRef) || has(self.caBundleSecretRef.__namespace__))",message="every secretRef of a ClusterVaultConnection must name a namespace"
type ClusterVaultConnectionSpec struct {
	VaultConnectionSpec `json:",inline"`
	// namespaceSelector selects the namespaces whose SecretBindings may use this
	// connection. An empty selector matches every namespace; when omitted, none may.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	// allowedVaults are glob patterns (shell syntax: * and ? do not cross a /, [a-z]
	// classes) a binding's vault must match; {namespace} stands for the binding's
	// namespace, e.g. "acme/{namespace}-*". Empty allows every vault.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=512
	AllowedVaults []string `json:"allowedVaults,omitempty"`
	// allowedEnvironments are glob patterns, as allowedVaults, a binding's environment
	// must match. Empty allows every environment.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=256
	AllowedEnvironments []string `json:"allowedEnvironments,omitempty"`
	// allowBindingRequest lets bindings set their own request (method, path and body on
	// this connection's host, with its credential). Off by default: bindings then use
	// spec.request or the provider's native endpoint.
	// +optional
	AllowBindingRequest bool `json:"allowBindingRequest,omitempty"`
	// allowPush lets SecretPushes of the selected namespaces write through this connection
	// (within allowedVaults and allowedEnvironments). Off by default: a lent credential only
	// reads.
	// +optional
	AllowPush bool `json:"allowPush,omitempty"`
}

// ClusterVaultConnection is a cluster-scoped VaultConnection that SecretBindings in the
// namespaces matched by namespaceSelector may use. Its secretRefs name a namespace.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=cvc,categories=keyferry
// +kubebuilder:printcolumn:name="Provider",type=string,JSONPath=`.spec.provider`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Suspended",type=boolean,JSONPath=`.spec.suspend`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterVaultConnection struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says where the vault is, how to authenticate and which namespaces may use it.
	Spec ClusterVaultConnectionSpec `json:"spec"`
	// status is the observed state of the connection. Until keyferry first writes it,
	// observedGeneration 0 tells kstatus readers the object is in progress.
	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status VaultConnectionStatus `json:"status,omitempty"`
}

// ClusterVaultConnectionList is a list of ClusterVaultConnections.
// +kubebuilder:object:root=true
type ClusterVaultConnectionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterVaultConnection `json:"items"`
}
