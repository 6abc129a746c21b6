package v1beta1

// Condition types.
const (
	// ConditionReady says whether the object does its job now: a connection can
	// authenticate, a binding's target Secret holds the vault's current data.
	ConditionReady = "Ready"
	// ConditionReconciling (kstatus) is True while keyferry works on the object or waits
	// for a time the provider or keyferry set: a first sync, a new generation, a
	// Retry-After, a provider that is down. Absent otherwise.
	ConditionReconciling = "Reconciling"
	// ConditionStalled (kstatus) is True while the object cannot progress without a change
	// of spec, credentials or target (Unauthorized, Forbidden, NotFound, InvalidSpec,
	// TargetConflict, TooLarge, NotAllowed, CredentialsNotFound). Absent otherwise.
	ConditionStalled = "Stalled"
	// ConditionCredentialsHealthy (connections) says whether the credential is in good
	// shape beyond working now: not about to lapse, not older than maxCredentialAge, its
	// rotation not failing. It never changes Ready: a connection whose key lapses in a
	// week still serves.
	ConditionCredentialsHealthy = "CredentialsHealthy"
)

// Condition reasons. Messages that go with them carry the HTTP status and the provider's
// own error text, never a credential or a secret value.
const (
	// ReasonSynced: the target Secret holds the data pulled at lastSyncTime.
	ReasonSynced = "Synced"
	// ReasonAuthenticated: the connection's credentials were accepted.
	ReasonAuthenticated = "Authenticated"
	// ReasonUnauthorized: the provider answered HTTP 401 (credentials missing, wrong or expired).
	ReasonUnauthorized = "Unauthorized"
	// ReasonForbidden: the provider answered HTTP 403 (authenticated but not allowed).
	ReasonForbidden = "Forbidden"
	// ReasonRateLimited: the provider answered 429 or asked to wait with Retry-After, or the
	// connection's own rate budget is spent; status.retryAfter says until when.
	ReasonRateLimited = "RateLimited"
	// ReasonNotFound: the provider answered HTTP 404.
	ReasonNotFound = "NotFound"
	// ReasonProviderUnavailable: HTTP 5xx, a timeout, a refused connection or a TLS failure.
	ReasonProviderUnavailable = "ProviderUnavailable"
	// ReasonInvalidResponse: the provider's answer could not be decoded or was too large.
	ReasonInvalidResponse = "InvalidResponse"
	// ReasonInvalidSpec: the spec is wrong in a way the schema cannot catch (a bad regex,
	// a template error, an invalid key).
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonCredentialsNotFound: the referenced credentials Secret or one of its keys is missing.
	ReasonCredentialsNotFound = "CredentialsNotFound"
	// ReasonConnectionNotReady: the binding's connection is missing, not allowed for the
	// binding's namespace, or not Ready.
	ReasonConnectionNotReady = "ConnectionNotReady"
	// ReasonTargetConflict: the target Secret exists and is not managed by keyferry.
	ReasonTargetConflict = "TargetConflict"
	// ReasonTooLarge: the rendered Secret would exceed the 1 MiB Secret size limit.
	ReasonTooLarge = "TooLarge"
	// ReasonNotAllowed: keyferry's own policy refused it: an address on the egress deny
	// list, a vault or environment a ClusterVaultConnection does not lend, a request the
	// connection does not let bindings set, a namespace outside its namespaceSelector.
	ReasonNotAllowed = "NotAllowed"
	// ReasonProgressing: the object was accepted and its first pass has not finished yet.
	ReasonProgressing = "Progressing"
	// ReasonConflict: something keyferry would write is not keyferry's: a SecretBinding of
	// a ClusterSecretBinding's bindingName that it did not create, or a vault key someone
	// else changed since a SecretPush pushed it.
	ReasonConflict = "Conflict"
	// ReasonSourceNotFound: a SecretPush's source Secret is missing.
	ReasonSourceNotFound = "SourceNotFound"
	// ReasonBindingsNotReady: some of a ClusterSecretBinding's bindings are not Ready
	// (failedNamespaces says which and why).
	ReasonBindingsNotReady = "BindingsNotReady"
	// ReasonCredentialValid: the credential has no known lapse within the warning and is
	// not too old; a rotation, where set, is on schedule.
	ReasonCredentialValid = "CredentialValid"
	// ReasonCredentialExpiring: the credential lapses within credentialExpiryWarning (or
	// has lapsed): status.credentialExpiresAt says when.
	ReasonCredentialExpiring = "CredentialExpiring"
	// ReasonCredentialTooOld: the credential Secret's data is older than maxCredentialAge.
	ReasonCredentialTooOld = "CredentialTooOld"
	// ReasonRotating: a key rotation is under way (the current key serves until the new
	// one is verified).
	ReasonRotating = "Rotating"
	// ReasonRotationFailed: the last rotation step failed; status.rotation.lastError says
	// why. The current key still serves.
	ReasonRotationFailed = "RotationFailed"
	// ReasonListening: the receiver's hooks are answered at status.webhookPath.
	ReasonListening = "Listening"
	// ReasonListenerDisabled: the manager runs without its webhook listener (neither
	// --webhook-cert-dir nor --webhook-allow-http): hooks cannot reach it.
	ReasonListenerDisabled = "ListenerDisabled"
)

// Well-known annotations and labels.
const (
	// AnnotationRefresh on a SecretBinding forces a sync whenever its value changes; the
	// handled value is echoed in status.lastHandledRefresh.
	AnnotationRefresh = "keyferry.dev/refresh"
	// AnnotationDataHMAC on a managed Secret holds a keyed HMAC of the data keyferry wrote,
	// so an unchanged pull causes no write.
	AnnotationDataHMAC = "keyferry.dev/data-hmac"
	// AnnotationBinding names (in full) the SecretBinding that writes a Secret.
	AnnotationBinding = "keyferry.dev/binding"
	// AnnotationKeys lists the keys a Merge binding wrote into a Secret it does not own.
	AnnotationKeys = "keyferry.dev/keys"
	// LabelManagedBy marks Secrets that keyferry owns (creationPolicy Owner or Orphan).
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// LabelManagedByValue is the value of LabelManagedBy on keyferry's Secrets.
	LabelManagedByValue = "keyferry"
	// LabelBinding is on every Secret keyferry writes (whatever its creationPolicy): the
	// binding's name, shortened with a hash when over 63 characters. The operator caches
	// and watches only Secrets with this label.
	LabelBinding = "keyferry.dev/binding"
	// LabelCredentials: "true" on a Secret lets connections use it as credentials or a CA
	// bundle. Without it keyferry refuses to read it (CredentialsNotFound), so creating a
	// connection does not amount to reading every Secret of the namespace.
	LabelCredentials = "keyferry.dev/credentials"
	// AnnotationAllowMerge: "true" on a Secret lets SecretBindings with creationPolicy
	// Merge write their keys into it. Without it, a Merge is a TargetConflict.
	AnnotationAllowMerge = "keyferry.dev/allow-merge"
	// LabelRestartOnChange: "true" on a Deployment, StatefulSet or DaemonSet makes keyferry
	// restart it when keys it consumes of keyferry-managed Secrets change.
	LabelRestartOnChange = "keyferry.dev/restart-on-change"
	// AnnotationRestartedFor on a workload's pod template is the keyed HMAC of the Secret
	// data it consumes; keyferry changes it (rolling the workload out) when that data does.
	AnnotationRestartedFor = "keyferry.dev/restarted-for"
	// AnnotationRestartedAt on a workload is when keyferry last restarted it (RFC 3339):
	// the binding reconciler reads it into status.lastRestartTime of the bindings whose
	// Secrets the workload consumes, so that status keeps one writer.
	AnnotationRestartedAt = "keyferry.dev/restarted-at"
	// LabelTemplate: "true" on a ConfigMap lets bindings of its namespace read templates
	// from it (target.templateFrom); keyferry caches only those ConfigMaps.
	LabelTemplate = "keyferry.dev/template"
	// AnnotationTemplates on a target Secret is a keyed digest of the templates it was
	// rendered from (target.templateFrom): when they change, the Secret is rendered again
	// from the data at hand, without a provider request.
	AnnotationTemplates = "keyferry.dev/templates"
	// LabelPrefixConsumed: a label consumed.keyferry.dev/<Secret> on a workload records a
	// short keyed digest of the data it read of that managed Secret when it last started
	// (or was first seen), so a restart happens only when data it read changed. <Secret> is
	// the Secret's name, or a hash of it when the name is longer than a label allows.
	// Labels, not annotations: any change of a Deployment's annotations bumps its
	// generation (they are copied to its ReplicaSets), which tools read as a rollout.
	LabelPrefixConsumed = "consumed.keyferry.dev/"
	// AnnotationConsumed is where keyferry before v0.2 recorded the same, per Secret; it is
	// still read (so an upgrade restarts nothing) and never written.
	AnnotationConsumed = "keyferry.dev/consumed"
	// LabelClusterSecretBinding on a SecretBinding names the ClusterSecretBinding that
	// wrote it. Only the owner reference proves it: anyone who may write a binding can set
	// a label.
	LabelClusterSecretBinding = "keyferry.dev/cluster-secret-binding"
	// AnnotationTemplateHash on a SecretBinding written by a ClusterSecretBinding is a
	// digest of what was applied, so an unchanged template costs no write.
	AnnotationTemplateHash = "keyferry.dev/template-hash"
	// LabelPush: "true" on a Secret lets SecretPushes of its namespace send its keys to a
	// vault. Without it keyferry refuses (NotAllowed), so creating a SecretPush does not
	// amount to sending any Secret of the namespace out of the cluster.
	LabelPush = "keyferry.dev/push"
	// FinalizerPushCleanup lets a deleted SecretPush with deletionPolicy Delete remove the
	// keys it pushed first.
	FinalizerPushCleanup = "keyferry.dev/push-cleanup"
	// LabelRotate: "true" on a credential Secret lets keyferry write into it (key
	// rotation). Without it a connection with rotation is NotAllowed, checked before any
	// request.
	LabelRotate = "keyferry.dev/rotate"
	// AnnotationRotateNow on a connection rotates its key at once whenever its value
	// changes (a suspected leak); the handled value is echoed in
	// status.rotation.lastHandledRotateNow.
	AnnotationRotateNow = "keyferry.dev/rotate-now"
	// AnnotationKeyID on a credential Secret is the provider's id of the key it holds.
	// keyferry writes it on rotation; set it by hand where the provider cannot tell a
	// key's id from the key (knowledgestack).
	AnnotationKeyID = "keyferry.dev/key-id"
	// AnnotationKeyCreatedAt and AnnotationKeyExpiresAt on a credential Secret are when
	// the key it holds was created and lapses (RFC 3339), written on rotation.
	AnnotationKeyCreatedAt = "keyferry.dev/key-created-at"
	AnnotationKeyExpiresAt = "keyferry.dev/key-expires-at"
	// AnnotationPreviousKeyID on a credential Secret is the id of the key a rotation is
	// retiring: while it is there, that key is still to be revoked.
	AnnotationPreviousKeyID = "keyferry.dev/previous-key-id"
	// PreviousKeySuffix is appended to the credential's key in the Secret to hold the key
	// a rotation replaces until the new one is verified.
	PreviousKeySuffix = "-previous"
	// AnnotationLastRound on a RefreshReceiver is the last refresh round a hook caused
	// ("<RFC 3339 time> <objects refreshed>"), written by whichever replica took the hook;
	// the receiver's reconciler turns it into status.lastHandled, so status has one writer.
	AnnotationLastRound = "keyferry.dev/last-round"
	// RefreshFromHookPrefix starts the keyferry.dev/refresh value a hook's round writes:
	// "hook/<receiver>@<RFC 3339 time of the round>". A binding takes any answer to a
	// request sent after that time, so the bindings of one round share one pull.
	RefreshFromHookPrefix = "hook/"
	// FieldManager is the server-side apply field manager of every write keyferry makes.
	FieldManager = "keyferry"
	// FinalizerSignout lets a deleted connection sign its session out first.
	FinalizerSignout = "keyferry.dev/signout"
	// FinalizerMergeCleanup lets a deleted Merge binding remove its keys first.
	FinalizerMergeCleanup = "keyferry.dev/merge-cleanup"
)
