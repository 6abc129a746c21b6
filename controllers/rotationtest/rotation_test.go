package rotationtest_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/connection"
	"github.com/keyferry/keyferry/internal/dev/devvault"
)

// A full rotation: the next pulls use the new key, the old one answers 401, and it cost
// one list, one create, one verifying read and one revoke; no binding was ever not Ready.
func TestKeywayRotation(t *testing.T) {
	w := newWorld(t)
	startManager(t, managerOptions{})
	old, cred, vc := w.keywaySetup("bootstrap", true)
	b := w.binding("app", "keyway", "keyway")
	w.create(cred, vc, b)
	waitSynced(t, b)
	eventually(t, 10*time.Second, "the current key described", func() (bool, string) {
		r := get(t, vc).Status.Rotation
		return r != nil && r.CurrentKeyID == old.ID && r.NextRotation != nil, fmt.Sprintf("%+v", r)
	})
	if r := vc.Status.Rotation; r.CurrentKeyPrefix != old.Token[:16] || !r.NextRotation.Time.Equal(old.CreatedAt.Add(kf.DefaultRotationEvery).Truncate(time.Second)) {
		t.Errorf("rotation status %+v: want prefix %s and next rotation 30 days after the key's creation", r, old.Token[:16])
	}
	before := w.dev.Counts()

	notReady := watchReady(t, b)
	stopPulls := pullDuring(t, b)
	writes := countWrites(t, cred)
	rotateNow(t, vc, "1")
	waitRotationIdle(t, vc, "1")
	stopPulls()
	// Three writes of the credential Secret: the new key beside the old, the old dropped
	// once the new one is verified, the old id cleared once it is revoked.
	if n := writes(); n != 3 {
		t.Errorf("%d writes of the credential Secret, want 3", n)
	}
	if bad := notReady(); len(bad) > 0 {
		t.Errorf("bindings were not Ready during the rotation: %v", bad[:min(len(bad), 5)])
	}

	after := w.dev.Counts()
	for _, ep := range []string{"keyway.api-keys.create", "keyway.api-keys.revoke", "keyway.vaults"} {
		if n := after[ep] - before[ep]; n != 1 {
			t.Errorf("%s: %d requests, want exactly 1", ep, n)
		}
	}
	if n := after["keyway.api-keys.list"] - before["keyway.api-keys.list"]; n != 1 {
		t.Errorf("keyway.api-keys.list: %d requests, want 1 (finding leftovers before the create)", n)
	}
	active := w.dev.ActiveKeys("keyway")
	if len(active) != 1 || active[0].ID == old.ID {
		t.Fatalf("active keys after the rotation: %+v, want one new key", active)
	}
	sec := get(t, &corev1.Secret{ObjectMeta: cred.ObjectMeta})
	if string(sec.Data["token"]) != active[0].Token || len(sec.Data["token"+kf.PreviousKeySuffix]) != 0 {
		t.Errorf("the Secret holds keys %v, want only the new one", keys(sec.Data))
	}
	if sec.Annotations[kf.AnnotationKeyID] != active[0].ID || sec.Annotations[kf.AnnotationPreviousKeyID] != "" {
		t.Errorf("Secret annotations %v", sec.Annotations)
	}
	if active[0].Name != "keyferry-"+w.ns+"-keyway" || strings.Join(active[0].Scopes, ",") != strings.Join(old.Scopes, ",") {
		t.Errorf("new key %s with scopes %v; want the default name and the old key's scopes", active[0].Name, active[0].Scopes)
	}
	if code := w.answers(old.Token); code != http.StatusUnauthorized {
		t.Errorf("the old key answers %d, want 401", code)
	}
	// The next pull uses the new key (the old one is revoked: a pull with it would fail).
	pulls := w.dev.Count("keyway.pull")
	rotateRefresh(t, b, "after")
	eventually(t, 10*time.Second, "a pull after the rotation", func() (bool, string) {
		c := ready(get(t, b).Status.Conditions)
		return w.dev.Count("keyway.pull") > pulls && c.Reason == kf.ReasonSynced && b.Status.LastHandledRefresh == "after", fmt.Sprint(c)
	})
	r := get(t, vc).Status
	h := meta.FindStatusCondition(r.Conditions, kf.ConditionCredentialsHealthy)
	if h == nil || h.Status != metav1.ConditionTrue || r.Rotation.CurrentKeyID != active[0].ID || r.Rotation.LastRotationTime == nil {
		t.Errorf("status after the rotation: %+v %+v", h, r.Rotation)
	}
	if c := ready(r.Conditions); c.Status != metav1.ConditionTrue {
		t.Errorf("connection Ready %v", c)
	}
	w.noCanary(vc)
	assertEvent(t, w.ns, "Rotated")
}

// A manager killed after each step, then restarted: one working key at the end, the one
// in the Secret, and no binding ever not Ready.
func TestRotationResumesAfterAKill(t *testing.T) {
	for _, step := range []string{connection.StepCreate, connection.StepWrite, connection.StepVerify, connection.StepRevoke} {
		t.Run(step, func(t *testing.T) {
			w := newWorld(t)
			old, cred, vc := w.keywaySetup("bootstrap", true)
			b := w.binding("app", "keyway", "keyway")
			killed := make(chan struct{})
			var fired atomic.Bool
			stop := startManager(t, managerOptions{crash: func(conn kf.Connection, s string) error {
				if conn.GetNamespace() != w.ns {
					return nil
				}
				if fired.Load() {
					return errors.New("killed") // dead: not one more step
				}
				if s != step {
					return nil
				}
				fired.Store(true)
				close(killed)
				return errors.New("killed after " + s)
			}})
			w.create(cred, vc, b)
			waitSynced(t, b)
			notReady := watchReady(t, b)
			stopPulls := pullDuring(t, b)
			rotateNow(t, vc, "kill")
			select {
			case <-killed:
			case <-time.After(20 * time.Second):
				t.Fatal("the rotation never reached step " + step)
			}
			stop()
			startManager(t, managerOptions{})
			waitRotationIdle(t, vc, "kill")
			time.Sleep(500 * time.Millisecond) // pulls after the rotation too
			stopPulls()
			if bad := notReady(); len(bad) > 0 {
				t.Errorf("bindings were not Ready: %v", bad[:min(len(bad), 5)])
			}
			active := w.dev.ActiveKeys("keyway")
			sec := get(t, &corev1.Secret{ObjectMeta: cred.ObjectMeta})
			if len(active) != 1 || active[0].ID == old.ID || string(sec.Data["token"]) != active[0].Token {
				t.Fatalf("after the kill at %s: active keys %d, want exactly the new one in the Secret", step, len(active))
			}
			if len(sec.Data) != 1 || sec.Annotations[kf.AnnotationPreviousKeyID] != "" {
				t.Errorf("the Secret still holds %v / %v", keys(sec.Data), sec.Annotations)
			}
			if code := w.answers(old.Token); code != http.StatusUnauthorized {
				t.Errorf("the old key answers %d, want 401", code)
			}
			w.noCanary(vc)
		})
	}
}

// A key without admin:api-keys: the creation is refused, the connection goes on with its
// key, CredentialsHealthy says why (naming the scope), nothing was created.
func TestRotationRefusedKeepsTheKey(t *testing.T) {
	w := newWorld(t)
	startManager(t, managerOptions{})
	_, cred, vc := w.keywaySetup("read-only", true, "read:secrets")
	b := w.binding("app", "keyway", "keyway")
	w.create(cred, vc, b)
	waitSynced(t, b)
	rotateNow(t, vc, "1")
	waitUnhealthy(t, vc, kf.ReasonForbidden, "")
	// The first pass already tried (no key id known yet) and was refused, before the
	// binding's first pull proved the key: judge Ready by the pass that handled "1".
	eventually(t, 15*time.Second, "rotate-now 1 handled", func() (bool, string) {
		r := get(t, vc).Status.Rotation
		return r != nil && r.LastHandledRotateNow == "1", fmt.Sprintf("%+v", r)
	})
	h := meta.FindStatusCondition(vc.Status.Conditions, kf.ConditionCredentialsHealthy)
	if !strings.Contains(h.Message, "admin:api-keys") {
		t.Errorf("message %q does not name the scope", h.Message)
	}
	if c := ready(vc.Status.Conditions); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("connection Ready %v: a refused rotation must not stop a serving connection", c)
	}
	if n := w.dev.Count("keyway.api-keys.created"); n != 0 {
		t.Errorf("%d keys created", n)
	}
	refreshed(t, b, "still")
	assertEvent(t, w.ns, kf.ReasonForbidden)
}

// A credential Secret without keyferry.dev/rotate: NotAllowed naming the label, before any
// request of the key API.
func TestRotationNeedsTheSecretsConsent(t *testing.T) {
	w := newWorld(t)
	startManager(t, managerOptions{})
	_, cred, vc := w.keywaySetup("bootstrap", false)
	w.create(cred, vc)
	rotateNow(t, vc, "1")
	waitUnhealthy(t, vc, kf.ReasonNotAllowed, kf.LabelRotate)
	for ep, n := range w.dev.Counts() {
		if strings.HasPrefix(ep, "keyway.api-keys") && n > 0 {
			t.Errorf("%s: %d requests before consent", ep, n)
		}
	}
}

// A human edits the Secret while keyferry rotates: the edit wins, the new key is revoked
// and the rotation stops with Conflict.
func TestHumanEditDuringRotationWins(t *testing.T) {
	w := newWorld(t)
	old := w.keywayKey("bootstrap")
	human := w.keywayKey("typed-by-hand")
	cred := w.credential("keyway-cred", old.Token, true)
	vc := w.connection("keyway", "keyway", cred.Name)
	var fired atomic.Bool
	startManager(t, managerOptions{crash: func(conn kf.Connection, s string) error {
		if s == connection.StepCreate && conn.GetNamespace() == w.ns && fired.CompareAndSwap(false, true) {
			// Between the create and keyferry's write, someone pastes another key.
			patch := fmt.Sprintf(`{"data":{"token":%q}}`, b64(human.Token))
			if err := k8s.Patch(context.Background(), &corev1.Secret{ObjectMeta: cred.ObjectMeta}, client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
				t.Error(err)
			}
		}
		return nil
	}})
	w.create(cred, vc)
	rotateNow(t, vc, "1")
	waitUnhealthy(t, vc, kf.ReasonConflict, "")
	sec := get(t, &corev1.Secret{ObjectMeta: cred.ObjectMeta})
	if string(sec.Data["token"]) != human.Token || len(sec.Data) != 1 {
		t.Errorf("the human's key was not kept: %v", keys(sec.Data))
	}
	for _, k := range w.dev.ActiveKeys("keyway") {
		if k.ID != old.ID && k.ID != human.ID {
			t.Errorf("the key keyferry created (%s) is still active", k.ID)
		}
	}
	if vc.Status.Rotation.Phase != kf.RotationStopped || vc.Status.Rotation.LastHandledRotateNow != "1" {
		t.Errorf("rotation %+v, want Stopped with the request handled", vc.Status.Rotation)
	}
}

// A ClusterVaultConnection lending its key to 50 namespaces rotates once.
func TestClusterConnectionRotatesOnce(t *testing.T) {
	w := newWorld(t)
	startManager(t, managerOptions{})
	old := w.keywayKey("bootstrap")
	cred := w.credential("cluster-cred", old.Token, true)
	label := "rot-" + w.ns
	cvc := &kf.ClusterVaultConnection{ObjectMeta: metav1.ObjectMeta{Name: label}, Spec: kf.ClusterVaultConnectionSpec{
		VaultConnectionSpec: w.connection("x", "keyway", cred.Name).Spec,
		NamespaceSelector:   &metav1.LabelSelector{MatchLabels: map[string]string{"tenant": label}}}}
	cvc.Spec.Auth.Bearer.SecretRef.Namespace = w.ns
	w.create(cred, cvc)
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), cvc) })
	var bindings []*kf.SecretBinding
	for i := range 50 {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "rot-tenant-", Labels: map[string]string{"tenant": label}}}
		w.create(ns)
		b := &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: fmt.Sprintf("app-%d", i)}, Spec: kf.SecretBindingSpec{
			ConnectionRef: kf.ConnectionReference{Kind: kf.ConnectionKindCluster, Name: cvc.Name}, Vault: "acme/app", Environment: "production"}}
		w.create(b)
		bindings = append(bindings, b)
	}
	for _, b := range bindings {
		waitSynced(t, b)
	}
	rotateNow(t, cvc, "1")
	eventually(t, 30*time.Second, "the cluster connection rotated", func() (bool, string) {
		r := get(t, cvc).Status.Rotation
		return r != nil && r.LastHandledRotateNow == "1" && r.Phase == kf.RotationIdle, fmt.Sprintf("%+v", r)
	})
	if c, r := w.dev.Count("keyway.api-keys.created"), w.dev.Count("keyway.api-keys.revoked"); c != 1 || r != 1 {
		t.Errorf("%d keys created and %d revoked for 50 namespaces, want 1 and 1", c, r)
	}
	for _, b := range bindings {
		rotateRefresh(t, b, "after")
	}
	for _, b := range bindings {
		waitRefreshed(t, b, "after")
	}
}

// Knowledge Stack's listing shows no prefix: the hand-made key's id comes from the
// keyferry.dev/key-id annotation; without it the rotation says what to add.
func TestKnowledgeStackRotation(t *testing.T) {
	w := newWorld(t)
	startManager(t, managerOptions{})
	w.dev.AddKey(handMade("knowledgestack", "key_handmade", "ks_live_"+randomText(40)))
	old := w.dev.Keys("knowledgestack")[0]
	cred := w.credential("ks-cred", old.Token, true)
	vc := w.connection("ks", "knowledgestack", cred.Name)
	b := w.binding("app", "ks", "knowledgestack")
	w.create(cred, vc, b)
	waitSynced(t, b)
	rotateNow(t, vc, "1")
	waitUnhealthy(t, vc, "", kf.AnnotationKeyID)
	if n := w.dev.Count("knowledgestack.api-keys.created"); n != 0 {
		t.Fatalf("%d keys created without knowing the current one", n)
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, kf.AnnotationKeyID, old.ID)
	if err := k8s.Patch(context.Background(), &corev1.Secret{ObjectMeta: cred.ObjectMeta}, client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
		t.Fatal(err)
	}
	rotateNow(t, vc, "2")
	waitRotationIdle(t, vc, "2")
	active := w.dev.ActiveKeys("knowledgestack")
	sec := get(t, &corev1.Secret{ObjectMeta: cred.ObjectMeta})
	if len(active) != 1 || active[0].ID == old.ID || string(sec.Data["token"]) != active[0].Token || sec.Annotations[kf.AnnotationKeyID] != active[0].ID {
		t.Fatalf("after the rotation: active %d keys, Secret annotations %v", len(active), sec.Annotations)
	}
	refreshed(t, b, "after")
	w.noCanary(vc)
}

func handMade(vendor, id, token string) devvault.Key {
	return devvault.Key{Vendor: vendor, ID: id, Name: "made-by-hand", Token: token, CreatedAt: time.Now().Add(-time.Hour)}
}

// waitUnhealthy waits until conn's CredentialsHealthy is False with reason (any when
// empty) and a message holding text.
func waitUnhealthy(t *testing.T, conn *kf.VaultConnection, reason, text string) {
	t.Helper()
	eventually(t, 15*time.Second, "CredentialsHealthy False "+reason, func() (bool, string) {
		h := meta.FindStatusCondition(get(t, conn).Status.Conditions, kf.ConditionCredentialsHealthy)
		return h != nil && h.Status == metav1.ConditionFalse && (reason == "" || h.Reason == reason) && strings.Contains(h.Message, text), fmt.Sprint(h)
	})
}

// refreshed asks b for a refresh v and waits until a sync answered it.
func refreshed(t *testing.T, b *kf.SecretBinding, v string) {
	t.Helper()
	rotateRefresh(t, b, v)
	waitRefreshed(t, b, v)
}

func waitRefreshed(t *testing.T, b *kf.SecretBinding, v string) {
	t.Helper()
	eventually(t, 20*time.Second, b.Namespace+"/"+b.Name+" synced for refresh "+v, func() (bool, string) {
		got := get(t, b)
		c := ready(got.Status.Conditions)
		return got.Status.LastHandledRefresh == v && c != nil && c.Reason == kf.ReasonSynced, fmt.Sprint(c)
	})
}

func rotateRefresh(t *testing.T, b *kf.SecretBinding, v string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, kf.AnnotationRefresh, v)
	if err := k8s.Patch(context.Background(), b.DeepCopy(), client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
		t.Fatal(err)
	}
}

func assertEvent(t *testing.T, ns, reason string) {
	t.Helper()
	eventually(t, 10*time.Second, "a "+reason+" Event", func() (bool, string) {
		list := &corev1.EventList{}
		if err := k8s.List(context.Background(), list, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range list.Items {
			if e.Reason == reason {
				return true, ""
			}
			seen = append(seen, e.Reason)
		}
		return false, strings.Join(seen, ",")
	})
}

func keys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// A tenant changing rotate-now in a loop gets one rotation per 10 s, each handling the
// latest value: not one key, four requests and three Secret writes per change.
func TestRotateNowInALoopIsBounded(t *testing.T) {
	w := newWorld(t)
	startManager(t, managerOptions{})
	_, cred, vc := w.keywaySetup("bootstrap", true)
	w.create(cred, vc)
	rotateNow(t, vc, "0")
	waitRotationIdle(t, vc, "0")
	start := time.Now()
	for i := 1; i <= 20; i++ {
		rotateNow(t, vc, fmt.Sprint(i))
		time.Sleep(100 * time.Millisecond)
	}
	if n := w.dev.Count("keyway.api-keys.created"); n != 1 {
		t.Errorf("%d keys created during the loop, want only the first rotation's", n)
	}
	waitRotationIdle(t, vc, "20")
	if n := w.dev.Count("keyway.api-keys.created"); n != 2 {
		t.Errorf("%d keys created in all, want 2 (the first, then one for the latest value)", n)
	}
	if took := time.Since(start); took < 7*time.Second {
		t.Errorf("the latest value was handled after %v, before the 10 s floor", took)
	}
	if active := w.dev.ActiveKeys("keyway"); len(active) != 1 {
		t.Errorf("%d active keys, want 1", len(active))
	}
}

// A tenant points its connection's secretRef at another namespace's rotating Secret: a
// VaultConnection reads (and so rotates) only its own namespace's Secrets, so the victim's
// key is neither read, used nor rotated.
func TestRotationStaysInTheTenantsNamespace(t *testing.T) {
	victim := newWorld(t)
	startManager(t, managerOptions{})
	key := victim.keywayKey("victims-key")
	victimSecret := victim.credential("shared-name", key.Token, true)
	victim.create(victimSecret)

	attacker := &world{t: t, dev: victim.dev, url: victim.url}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "rot-attacker-"}}
	victim.create(ns)
	attacker.ns = ns.Name
	vc := attacker.connection("steal", "keyway", victimSecret.Name)
	vc.Spec.Auth.Bearer.SecretRef.Namespace = victim.ns
	attacker.create(vc)
	rotateNow(t, vc, "1")
	eventually(t, 10*time.Second, "CredentialsNotFound in the attacker's namespace", func() (bool, string) {
		c := ready(get(t, vc).Status.Conditions)
		return c != nil && c.Reason == kf.ReasonCredentialsNotFound && strings.Contains(c.Message, attacker.ns+"/"), fmt.Sprint(c)
	})
	time.Sleep(2 * time.Second)
	for ep, n := range victim.dev.Counts() {
		if n > 0 {
			t.Errorf("%s: %d requests with the victim's key", ep, n)
		}
	}
	got := get(t, &corev1.Secret{ObjectMeta: victimSecret.ObjectMeta})
	if string(got.Data["token"]) != key.Token || len(got.Annotations) != 0 {
		t.Errorf("the victim's Secret was touched: %v %v", keys(got.Data), got.Annotations)
	}
}
