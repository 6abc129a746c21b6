package v1beta1_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/dev/testenv"
)

var (
	env *envtest.Environment
	k8s client.Client
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var err error
	env, _, k8s, err = testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	return m.Run()
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "crd-test-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// samples returns every object of config/samples, each with the file it came from.
func samples(t *testing.T) (objs []*unstructured.Unstructured, files []string) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "samples", "keyferry_*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no samples found (%v)", err)
	}
	for _, f := range paths {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			objs, files = append(objs, u), append(files, filepath.Base(f))
		}
	}
	return objs, files
}

func TestSamplesAreAccepted(t *testing.T) {
	ns := newNamespace(t)
	seen := map[string]bool{}
	objs, files := samples(t)
	for i, u := range objs {
		if !strings.HasPrefix(u.GetKind(), "Cluster") {
			u.SetNamespace(ns)
		}
		if err := k8s.Create(context.Background(), u); err != nil {
			t.Errorf("%s: the apiserver rejected %s %s: %v", files[i], u.GetKind(), u.GetName(), err)
		}
		if u.GetKind() == "VaultConnection" {
			p, _, _ := unstructured.NestedString(u.Object, "spec", "provider")
			seen[p] = true
		}
	}
	for _, p := range []kf.Provider{kf.ProviderKeyway, kf.ProviderKeystash, kf.ProviderStash,
		kf.ProviderKnowledgeStack, kf.ProviderKeymint, kf.ProviderHTTP} {
		if !seen[string(p)] {
			t.Errorf("no sample VaultConnection for provider %s", p)
		}
	}
}

func validConnection(ns string) *kf.VaultConnection {
	return &kf.VaultConnection{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "vc-", Namespace: ns},
		Spec: kf.VaultConnectionSpec{
			Provider: kf.ProviderKeyway,
			Auth: kf.AuthSpec{Bearer: &kf.BearerAuth{
				SecretRef: kf.SecretKeyReference{Name: "token", Key: "token"},
			}},
		},
	}
}

func validClusterConnection() *kf.ClusterVaultConnection {
	return &kf.ClusterVaultConnection{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "cvc-"},
		Spec: kf.ClusterVaultConnectionSpec{
			VaultConnectionSpec: kf.VaultConnectionSpec{
				Provider: kf.ProviderKeyway,
				Auth: kf.AuthSpec{Bearer: &kf.BearerAuth{
					SecretRef: kf.SecretKeyReference{Name: "token", Namespace: "keyferry-system", Key: "token"},
				}},
			},
			NamespaceSelector: &metav1.LabelSelector{},
		},
	}
}

func validBinding(ns string) *kf.SecretBinding {
	return &kf.SecretBinding{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "sb-", Namespace: ns},
		Spec: kf.SecretBindingSpec{
			ConnectionRef: kf.ConnectionReference{Name: "keyway"},
			Vault:         "acme/payments",
			Environment:   "production",
		},
	}
}

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func TestValidObjectsAreAccepted(t *testing.T) {
	ns := newNamespace(t)
	for _, obj := range []client.Object{validConnection(ns), validClusterConnection(), validBinding(ns)} {
		if err := k8s.Create(context.Background(), obj); err != nil {
			t.Errorf("valid %T rejected: %v", obj, err)
		}
	}
	// Ordinary template labels and annotations, and prefixes that only look reserved.
	tb := validBinding(ns)
	tb.Spec.Target.Template = &kf.TargetTemplate{Labels: map[string]string{"team": "a", "example.com/x": "y", "notkubernetes.io/z": "w"},
		Annotations: map[string]string{"app.example.com/owner": "a"}}
	if err := k8s.Create(context.Background(), tb); err != nil {
		t.Errorf("binding with ordinary template metadata rejected: %v", err)
	}
	// Sources alone, with every new field.
	sb := validBinding(ns)
	sb.Spec.Vault, sb.Spec.Environment = "", ""
	sb.Spec.Sources = []kf.SecretSource{{Vault: "acme/a", Environment: "common", Prefix: "COMMON_", DecodingStrategy: kf.DecodingAuto},
		{Vault: "acme/b", Environment: "production"}}
	sb.Spec.Target.TemplateFrom = []kf.TemplateFrom{{ConfigMap: kf.TemplateConfigMapRef{Name: "t", Items: []kf.TemplateFromItem{{Key: "config.json"}}}}}
	if err := k8s.Create(context.Background(), sb); err != nil {
		t.Errorf("binding with sources alone rejected: %v", err)
	} else if sb.Spec.Target.TemplateFrom[0].ConfigMap.Items[0].TemplateAs != kf.TemplateAsValues {
		t.Errorf("templateAs default = %q, want Values", sb.Spec.Target.TemplateFrom[0].ConfigMap.Items[0].TemplateAs)
	}
	// Rotation, with the every default and every keyway field.
	rc := validConnection(ns)
	rc.Spec.Auth.Bearer.Rotation = &kf.KeyRotation{ExpiresInDays: ptr.To[int32](90), KeyName: "keyferry-payments",
		Scopes: []kf.KeywayScope{"read:secrets", "admin:api-keys"}}
	rc.Spec.MaxCredentialAge = dur(2160 * time.Hour)
	if err := k8s.Create(context.Background(), rc); err != nil {
		t.Errorf("connection with rotation rejected: %v", err)
	} else if e := rc.Spec.Auth.Bearer.Rotation.Every; e == nil || e.Duration != kf.DefaultRotationEvery {
		t.Errorf("rotation.every default = %v, want %s", e, kf.DefaultRotationEvery)
	}
	ks := validConnection(ns)
	ks.Spec.Provider = kf.ProviderKnowledgeStack
	ks.Spec.Auth.Bearer.Rotation = &kf.KeyRotation{Every: dur(24 * time.Hour)}
	if err := k8s.Create(context.Background(), ks); err != nil {
		t.Errorf("knowledgestack connection with rotation rejected: %v", err)
	}
	b := validBinding(ns)
	if err := k8s.Create(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	// Defaults a user relies on.
	if b.Spec.RefreshInterval == nil || b.Spec.RefreshInterval.Duration != time.Hour {
		t.Errorf("refreshInterval default = %v, want 1h", b.Spec.RefreshInterval)
	}
	if b.Spec.Target.CreationPolicy != kf.CreationPolicyOwner || b.Spec.ConnectionRef.Kind != kf.ConnectionKindNamespaced {
		t.Errorf("defaults not applied: creationPolicy=%q kind=%q", b.Spec.Target.CreationPolicy, b.Spec.ConnectionRef.Kind)
	}
}

func TestCELRulesRejectBadObjects(t *testing.T) {
	ns := newNamespace(t)
	cases := []struct {
		name string
		obj  func() client.Object
		want string
	}{
		{"no auth method", func() client.Object {
			c := validConnection(ns)
			c.Spec.Auth = kf.AuthSpec{}
			return c
		}, "auth must set exactly one of bearer, apiKey or login"},
		{"two auth methods", func() client.Object {
			c := validConnection(ns)
			c.Spec.Auth.APIKey = &kf.APIKeyAuth{Header: "X-Key", SecretRef: kf.SecretKeyReference{Name: "k", Key: "k"}}
			return c
		}, "auth must set exactly one of bearer, apiKey or login"},
		{"plain http url", func() client.Object {
			c := validConnection(ns)
			c.Spec.URL = "http://vault.example.com"
			return c
		}, "url must start with https://"},
		{"http provider without url", func() client.Object {
			c := validConnection(ns)
			c.Spec.Provider = kf.ProviderHTTP
			return c
		}, "url is required for provider http"},
		{"unknown provider", func() client.Object {
			c := validConnection(ns)
			c.Spec.Provider = "hashicorp"
			return c
		}, `Unsupported value: "hashicorp"`},
		{"unknown login encoding", func() client.Object {
			c := validConnection(ns)
			c.Spec.Auth = kf.AuthSpec{Login: &kf.LoginAuth{Encoding: "xml", SecretRef: kf.SecretReference{Name: "l"}}}
			return c
		}, `Unsupported value: "xml"`},
		{"zero rate limit", func() client.Object {
			c := validConnection(ns)
			c.Spec.RateLimit = &kf.RateLimit{Requests: 0, Period: metav1.Duration{Duration: time.Minute}}
			return c
		}, "rateLimit.requests must be positive"},
		{"zero rate period", func() client.Object {
			c := validConnection(ns)
			c.Spec.RateLimit = &kf.RateLimit{Requests: 10, Period: metav1.Duration{}}
			return c
		}, "rateLimit.period must be positive"},
		{"rotation on a provider without a key API", func() client.Object {
			c := validConnection(ns)
			c.Spec.Provider = kf.ProviderKeymint
			c.Spec.Auth.Bearer.Rotation = &kf.KeyRotation{}
			return c
		}, "auth rotation needs a provider with a documented key API"},
		{"keyway scopes on knowledgestack", func() client.Object {
			c := validConnection(ns)
			c.Spec.Provider = kf.ProviderKnowledgeStack
			c.Spec.Auth.Bearer.Rotation = &kf.KeyRotation{Scopes: []kf.KeywayScope{"read:secrets", "admin:api-keys"}}
			return c
		}, "rotation.scopes and rotation.expiresInDays are keyway's"},
		{"rotation scopes that cannot rotate again", func() client.Object {
			c := validConnection(ns)
			c.Spec.Auth.Bearer.Rotation = &kf.KeyRotation{Scopes: []kf.KeywayScope{"read:secrets"}}
			return c
		}, "rotation.scopes must hold admin:api-keys"},
		{"an unknown scope", func() client.Object {
			c := validConnection(ns)
			c.Spec.Auth.Bearer.Rotation = &kf.KeyRotation{Scopes: []kf.KeywayScope{"read:secrets", "admin:api-keys", "root"}}
			return c
		}, `Unsupported value: "root"`},
		{"expiresInDays over 365", func() client.Object {
			c := validConnection(ns)
			c.Spec.Auth.Bearer.Rotation = &kf.KeyRotation{ExpiresInDays: ptr.To[int32](400)}
			return c
		}, "should be less than or equal to 365"},
		{"a key name with a slash", func() client.Object {
			c := validConnection(ns)
			c.Spec.Auth.Bearer.Rotation = &kf.KeyRotation{KeyName: "a/b"}
			return c
		}, "keyName"},
		{"cluster connection secretRef without namespace", func() client.Object {
			c := validClusterConnection()
			c.Spec.Auth.Bearer.SecretRef.Namespace = ""
			return c
		}, "every secretRef of a ClusterVaultConnection must name a namespace"},
		{"refresh interval under 10s", func() client.Object {
			b := validBinding(ns)
			b.Spec.RefreshInterval = dur(5 * time.Second)
			return b
		}, "refreshInterval must be at least 10s"},
		{"empty vault", func() client.Object {
			b := validBinding(ns)
			b.Spec.Vault = ""
			return b
		}, "vault must not be empty"},
		{"neither vault nor sources", func() client.Object {
			b := validBinding(ns)
			b.Spec.Vault, b.Spec.Environment = "", ""
			return b
		}, "set vault and environment, sources, or both"},
		{"a source without environment", func() client.Object {
			b := validBinding(ns)
			b.Spec.Sources = []kf.SecretSource{{Vault: "acme/x"}}
			return b
		}, "environment"},
		{"bad decodingStrategy", func() client.Object {
			b := validBinding(ns)
			b.Spec.DecodingStrategy = "Hex"
			return b
		}, "decodingStrategy"},
		{"templateFrom without items", func() client.Object {
			b := validBinding(ns)
			b.Spec.Target.TemplateFrom = []kf.TemplateFrom{{ConfigMap: kf.TemplateConfigMapRef{Name: "t"}}}
			return b
		}, "items"},
		{"empty environment", func() client.Object {
			b := validBinding(ns)
			b.Spec.Environment = ""
			return b
		}, "environment must not be empty"},
		{"unknown request format", func() client.Object {
			b := validBinding(ns)
			b.Spec.Request = &kf.RequestSpec{Path: "/x", Format: "yaml"}
			return b
		}, `Unsupported value: "yaml"`},
		{"unknown creation policy", func() client.Object {
			b := validBinding(ns)
			b.Spec.Target.CreationPolicy = "Adopt"
			return b
		}, `Unsupported value: "Adopt"`},
		{"rename to an invalid key", func() client.Object {
			b := validBinding(ns)
			b.Spec.Rename = map[string]kf.SecretKeyName{"DB_PASS": "db pass"}
			return b
		}, "rename targets must be valid Secret keys"},
		{"template key invalid", func() client.Object {
			b := validBinding(ns)
			b.Spec.Target.Template = &kf.TargetTemplate{Data: map[string]string{"bad/key": "{{ .A }}"}}
			return b
		}, "template.data keys must be valid Secret keys"},
		{"rate limit over the maximum", func() client.Object {
			c := validConnection(ns)
			c.Spec.RateLimit = &kf.RateLimit{Requests: 2147483647, Period: metav1.Duration{Duration: time.Second}}
			return c
		}, "should be less than or equal to 100000"},
		{"service account token type", func() client.Object {
			b := validBinding(ns)
			b.Spec.Target.Type = corev1.SecretTypeServiceAccountToken
			return b
		}, "target.type may not be a token-minting type"},
		{"bootstrap token type", func() client.Object {
			b := validBinding(ns)
			b.Spec.Target.Type = "bootstrap.kubernetes.io/token"
			return b
		}, "target.type may not be a token-minting type"},
		{"template annotation naming a service account", func() client.Object {
			b := validBinding(ns)
			b.Spec.Target.Template = &kf.TargetTemplate{Annotations: map[string]string{"kubernetes.io/service-account.name": "deployer"}}
			return b
		}, "template.annotations may not use the reserved prefixes"},
		{"template label claiming another binding", func() client.Object {
			b := validBinding(ns)
			b.Spec.Target.Template = &kf.TargetTemplate{Labels: map[string]string{"keyferry.dev/binding": "victim"}}
			return b
		}, "template.labels may not use the reserved prefixes"},
		{"template label under a subdomain of k8s.io", func() client.Object {
			b := validBinding(ns)
			b.Spec.Target.Template = &kf.TargetTemplate{Labels: map[string]string{"node-role.k8s.io/x": "y"}}
			return b
		}, "template.labels may not use the reserved prefixes"},
		{"unknown connection kind", func() client.Object {
			b := validBinding(ns)
			b.Spec.ConnectionRef.Kind = "SecretStore"
			return b
		}, `Unsupported value: "SecretStore"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := k8s.Create(context.Background(), tc.obj())
			if err == nil {
				t.Fatalf("the apiserver accepted an object that should be rejected (want %q)", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("rejected with %q, want a message containing %q", err, tc.want)
			}
		})
	}
}

func TestInsecureHTTPAllowedWhenAsked(t *testing.T) {
	c := validConnection(newNamespace(t))
	c.Spec.URL = "http://127.0.0.1:8200"
	c.Spec.AllowInsecureHTTP = true
	if err := k8s.Create(context.Background(), c); err != nil {
		t.Fatalf("http url with allowInsecureHTTP rejected: %v", err)
	}
}

func TestStatusSubresourceLeavesSpecAlone(t *testing.T) {
	ctx := context.Background()
	b := validBinding(newNamespace(t))
	if err := k8s.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	generation := b.Generation
	b.Spec.Environment = "changed-through-status"
	b.Status.SyncedKeys = 7
	b.Status.Conditions = []metav1.Condition{{Type: kf.ConditionReady, Status: metav1.ConditionTrue,
		Reason: kf.ReasonSynced, Message: "ok", LastTransitionTime: metav1.Now()}}
	if err := k8s.Status().Update(ctx, b); err != nil {
		t.Fatalf("status update: %v", err)
	}
	got := &kf.SecretBinding{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(b), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.SyncedKeys != 7 || len(got.Status.Conditions) != 1 {
		t.Errorf("status not stored: %+v", got.Status)
	}
	if got.Spec.Environment != "production" || got.Generation != generation {
		t.Errorf("status update changed spec: environment=%q generation %d -> %d",
			got.Spec.Environment, generation, got.Generation)
	}
}

func TestKubectlExplainReadsWell(t *testing.T) {
	user, err := env.AddUser(envtest.User{Name: "explainer", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubectl, err := user.Kubectl()
	if err != nil {
		t.Fatal(err)
	}
	for resource, want := range map[string][]string{
		"secretbinding.spec.target":                     {"creationPolicy", "Owner", "template", "name of the Secret"},
		"vaultconnection.spec.auth":                     {"exactly one of bearer, apiKey or login", "login"},
		"clustervaultconnection.spec.namespaceSelector": {"namespaces whose SecretBindings may use"},
	} {
		stdout, stderr, err := kubectl.Run("explain", resource)
		if err != nil {
			b, _ := io.ReadAll(stderr)
			t.Fatalf("kubectl explain %s: %v: %s", resource, err, b)
		}
		out, _ := io.ReadAll(stdout)
		for _, w := range want {
			if !strings.Contains(string(out), w) {
				t.Errorf("kubectl explain %s lacks %q:\n%s", resource, w, out)
			}
		}
	}
}
