package v1beta1

import (
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// DefaultRefreshInterval applies when a binding sets none (the schema defaults it too).
const DefaultRefreshInterval = time.Hour

// GetKind returns the referenced connection's kind, VaultConnection when unset.
func (r ConnectionReference) GetKind() ConnectionKind {
	if r.Kind == "" {
		return ConnectionKindNamespaced
	}
	return r.Kind
}

// GetTargetName returns the name of the Secret the binding writes: target.name, else the
// binding's own name.
func (b *SecretBinding) GetTargetName() string {
	if b.Spec.Target.Name != "" {
		return b.Spec.Target.Name
	}
	return b.Name
}

// GetCreationPolicy returns target.creationPolicy, Owner when unset.
func (b *SecretBinding) GetCreationPolicy() CreationPolicy {
	if b.Spec.Target.CreationPolicy == "" {
		return CreationPolicyOwner
	}
	return b.Spec.Target.CreationPolicy
}

// GetSecretType returns target.type, Opaque when unset.
func (b *SecretBinding) GetSecretType() corev1.SecretType {
	if b.Spec.Target.Type == "" {
		return corev1.SecretTypeOpaque
	}
	return b.Spec.Target.Type
}

// GetRefreshInterval returns refreshInterval, DefaultRefreshInterval when unset or below
// the schema's 10s minimum (an object stored before the rule).
func (b *SecretBinding) GetRefreshInterval() time.Duration {
	if b.Spec.RefreshInterval == nil || b.Spec.RefreshInterval.Duration < 10*time.Second {
		return DefaultRefreshInterval
	}
	return b.Spec.RefreshInterval.Duration
}

// Connection is what both connection kinds share, so that controllers handle them alike.
// +kubebuilder:object:generate=false
type Connection interface {
	metav1.Object
	runtime.Object
	// ConnectionKind is the object's kind, as a SecretBinding's connectionRef names it.
	ConnectionKind() ConnectionKind
	ConnectionSpec() *VaultConnectionSpec
	ConnectionStatus() *VaultConnectionStatus
	// SecretNamespace is the namespace a secretRef with the given namespace field points
	// to: always the connection's own for a VaultConnection.
	SecretNamespace(refNamespace string) string
}

// NewConnection returns an empty connection of the given kind, named namespace/name (a
// ClusterVaultConnection ignores namespace).
func NewConnection(kind ConnectionKind, namespace, name string) Connection {
	if kind == ConnectionKindCluster {
		return &ClusterVaultConnection{ObjectMeta: metav1.ObjectMeta{Name: name}}
	}
	return &VaultConnection{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
}

// NewConnectionList returns an empty list of connections of the given kind.
func NewConnectionList(kind ConnectionKind) runtime.Object {
	if kind == ConnectionKindCluster {
		return &ClusterVaultConnectionList{}
	}
	return &VaultConnectionList{}
}

// ConnectionKind implements Connection.
func (c *VaultConnection) ConnectionKind() ConnectionKind { return ConnectionKindNamespaced }

// ConnectionSpec implements Connection.
func (c *VaultConnection) ConnectionSpec() *VaultConnectionSpec { return &c.Spec }

// ConnectionStatus implements Connection.
func (c *VaultConnection) ConnectionStatus() *VaultConnectionStatus { return &c.Status }

// SecretNamespace implements Connection: a VaultConnection reads its own namespace only.
func (c *VaultConnection) SecretNamespace(string) string { return c.Namespace }

// ConnectionKind implements Connection.
func (c *ClusterVaultConnection) ConnectionKind() ConnectionKind { return ConnectionKindCluster }

// ConnectionSpec implements Connection.
func (c *ClusterVaultConnection) ConnectionSpec() *VaultConnectionSpec {
	return &c.Spec.VaultConnectionSpec
}

// ConnectionStatus implements Connection.
func (c *ClusterVaultConnection) ConnectionStatus() *VaultConnectionStatus { return &c.Status }

// SecretNamespace implements Connection: a ClusterVaultConnection names the namespace.
func (c *ClusterVaultConnection) SecretNamespace(refNamespace string) string {
	return refNamespace
}

// GetRefreshPolicy returns refreshPolicy, Periodic when unset.
func (b *SecretBinding) GetRefreshPolicy() RefreshPolicy {
	if b.Spec.RefreshPolicy == "" {
		return RefreshPolicyPeriodic
	}
	return b.Spec.RefreshPolicy
}

// GetBindingName returns the name of the SecretBinding the ClusterSecretBinding writes
// in each namespace: spec.bindingName, else its own name.
func (c *ClusterSecretBinding) GetBindingName() string {
	if c.Spec.BindingName != "" {
		return c.Spec.BindingName
	}
	return c.Name
}

// GetRefreshInterval returns refreshInterval, DefaultRefreshInterval when unset or below
// the schema's 10s minimum.
func (p *SecretPush) GetRefreshInterval() time.Duration {
	if p.Spec.RefreshInterval == nil || p.Spec.RefreshInterval.Duration < 10*time.Second {
		return DefaultRefreshInterval
	}
	return p.Spec.RefreshInterval.Duration
}

// GetUpdatePolicy returns updatePolicy, Replace when unset.
func (p *SecretPush) GetUpdatePolicy() UpdatePolicy {
	if p.Spec.UpdatePolicy == "" {
		return UpdatePolicyReplace
	}
	return p.Spec.UpdatePolicy
}

// IsSuspended says whether spec.suspend holds the object: keyferry neither reads, writes
// nor reports for it until it resumes.
func (b *SecretBinding) IsSuspended() bool { return b.Spec.Suspend }

// IsSuspended says whether spec.suspend holds the object.
func (c *ClusterSecretBinding) IsSuspended() bool { return c.Spec.Suspend }

// IsSuspended says whether spec.suspend holds the object.
func (p *SecretPush) IsSuspended() bool { return p.Spec.Suspend }

// IsSuspended says whether spec.suspend holds the object.
func (c *VaultConnection) IsSuspended() bool { return c.Spec.Suspend }

// IsSuspended says whether spec.suspend holds the object.
func (c *ClusterVaultConnection) IsSuspended() bool { return c.Spec.Suspend }

// IsSuspended says whether spec.suspend holds the object.
func (r *RefreshReceiver) IsSuspended() bool { return r.Spec.Suspend }

// StatusConditions are the status' conditions.
func (s RefreshReceiverStatus) StatusConditions() []metav1.Condition { return s.Conditions }

// GetKey returns the key of the receiver's shared secret, "token" when unset.
func (r ReceiverSecretReference) GetKey() string {
	if r.Key == "" {
		return "token"
	}
	return r.Key
}

// StatusConditions are the status' conditions (what an Event on a Ready transition reads).
func (s SecretBindingStatus) StatusConditions() []metav1.Condition { return s.Conditions }

// StatusConditions are the status' conditions.
func (s ClusterSecretBindingStatus) StatusConditions() []metav1.Condition { return s.Conditions }

// StatusConditions are the status' conditions.
func (s SecretPushStatus) StatusConditions() []metav1.Condition { return s.Conditions }

// StatusConditions are the status' conditions.
func (s VaultConnectionStatus) StatusConditions() []metav1.Condition { return s.Conditions }

// SourceNames are the vault and environment of the binding's first source (vault and
// environment, else sources[0]) and how many sources follow it, for display.
func (b *SecretBinding) SourceNames() (vault, environment string, more int) {
	switch {
	case b.Spec.Vault != "":
		return b.Spec.Vault, b.Spec.Environment, len(b.Spec.Sources)
	case len(b.Spec.Sources) > 0:
		return b.Spec.Sources[0].Vault, b.Spec.Sources[0].Environment, len(b.Spec.Sources) - 1
	}
	return "", "", 0
}

// DefaultRotationEvery is a rotation's every when unset (30 days).
const DefaultRotationEvery = 720 * time.Hour

// DefaultCredentialExpiryWarning is credentialExpiryWarning when unset (14 days).
const DefaultCredentialExpiryWarning = 14 * 24 * time.Hour

// RotatedCredential returns the rotation of a static credential and the Secret key holding
// it; nil when the connection does not rotate.
func (s *VaultConnectionSpec) RotatedCredential() (*KeyRotation, SecretKeyReference) {
	switch a := s.Auth; {
	case a.Bearer != nil && a.Bearer.Rotation != nil:
		return a.Bearer.Rotation, a.Bearer.SecretRef
	case a.APIKey != nil && a.APIKey.Rotation != nil:
		return a.APIKey.Rotation, a.APIKey.SecretRef
	}
	return nil, SecretKeyReference{}
}

// GetEvery returns every, DefaultRotationEvery when unset.
func (r *KeyRotation) GetEvery() time.Duration {
	if r.Every == nil || r.Every.Duration <= 0 {
		return DefaultRotationEvery
	}
	return r.Every.Duration
}

// GetKeyName returns keyName, or keyferry-<namespace>-<name> of conn (keyferry-<name> for
// a cluster-scoped connection), cut to the 100 characters providers accept.
func (r *KeyRotation) GetKeyName(conn metav1.Object) string {
	if r.KeyName != "" {
		return r.KeyName
	}
	name := "keyferry-" + conn.GetName()
	if ns := conn.GetNamespace(); ns != "" {
		name = "keyferry-" + ns + "-" + conn.GetName()
	}
	return name[:min(len(name), 100)]
}

// GetCredentialExpiryWarning returns credentialExpiryWarning, 14 days when unset.
func (s *VaultConnectionSpec) GetCredentialExpiryWarning() time.Duration {
	if s.CredentialExpiryWarning == nil || s.CredentialExpiryWarning.Duration <= 0 {
		return DefaultCredentialExpiryWarning
	}
	return s.CredentialExpiryWarning.Duration
}

// HookRefreshValue is the keyferry.dev/refresh value a receiver's round at writes.
func HookRefreshValue(receiver string, at time.Time) string {
	return RefreshFromHookPrefix + receiver + "@" + at.UTC().Format(time.RFC3339Nano)
}

// HookRefreshTime is when the round that wrote a keyferry.dev/refresh value began, for
// values a receiver wrote (HookRefreshValue).
func HookRefreshTime(value string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(value, RefreshFromHookPrefix)
	if !ok {
		return time.Time{}, false
	}
	i := strings.LastIndexByte(rest, '@')
	if i < 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, rest[i+1:])
	return t, err == nil
}
