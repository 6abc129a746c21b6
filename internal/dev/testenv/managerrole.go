package testenv

import (
	"context"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/keyferry/keyferry/internal/hmackey"
)

// OperatorNamespace is the operator's own namespace in test environments.
const OperatorNamespace = "keyferry-system"

// PrepareForManager makes a started environment ready for a keyferry manager: its
// namespace, its HMAC key, and a config acting with the shipped RBAC. It returns the
// config and the key.
func PrepareForManager(ctx context.Context, c client.Client, cfg *rest.Config) (*rest.Config, []byte, error) {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: OperatorNamespace}}); err != nil {
		return nil, nil, err
	}
	key, err := hmackey.Ensure(ctx, c, OperatorNamespace)
	if err != nil {
		return nil, nil, err
	}
	mgrCfg, err := AsManagerRole(ctx, c, cfg)
	return mgrCfg, key, err
}

// AsManagerRole binds the shipped manager ClusterRole (config/rbac/role.yaml) to a user
// and returns cfg acting as that user, so a verb the code needs and the role lacks fails
// the test.
func AsManagerRole(ctx context.Context, c client.Client, cfg *rest.Config) (*rest.Config, error) {
	raw, err := os.ReadFile(filepath.Join(RepoRoot(), "config", "rbac", "role.yaml"))
	if err != nil {
		return nil, err
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal(raw, role); err != nil {
		return nil, err
	}
	const user = "keyferry-manager"
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}}}
	for _, o := range []client.Object{role, binding} {
		if err := c.Create(ctx, o); err != nil {
			return nil, err
		}
	}
	out := rest.CopyConfig(cfg)
	out.Impersonate = rest.ImpersonationConfig{UserName: user}
	return out, nil
}
