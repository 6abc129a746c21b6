package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// mergePatch sends a JSON merge patch (the way kubectl patch --type merge does).
func mergePatch(t *testing.T, obj client.Object, patch map[string]any) {
	t.Helper()
	raw, err := json.Marshal(patch)
	if err != nil {
		t.Fatal(err)
	}
	if err := k8s.Patch(context.Background(), obj, client.RawPatch(types.MergePatchType, raw)); err != nil {
		t.Fatalf("patching %s: %v", obj.GetName(), err)
	}
}

func setSuspend(t *testing.T, obj client.Object, suspend bool) {
	t.Helper()
	mergePatch(t, obj, map[string]any{"spec": map[string]any{"suspend": suspend}})
}

// ownVault gives a test its own vault (so counts and values are its own) and returns the
// dev vault's pull counter for it.
func ownVault(ns, key, value string) (vaultName, pulls string) {
	vaultName = "acme/" + ns
	dev.SetSecret(vaultName, "production", key, value)
	return vaultName, "keyway.pull:" + vaultName + "/production"
}

// stays checks for a while that nothing happens: no pull, status as it was.
func stays(t *testing.T, what string, pulls string, b *kf.SecretBinding, check func() (bool, string)) {
	t.Helper()
	before := dev.Count(pulls)
	prev := getBinding(t, b).Status
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if ok, detail := check(); !ok {
			t.Fatalf("%s: %s", what, detail)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := dev.Count(pulls) - before; n != 0 {
		t.Fatalf("%s: %d pulls", what, n)
	}
	if now := getBinding(t, b).Status; !equality.Semantic.DeepEqual(prev, now) {
		t.Fatalf("%s: status changed\n was %+v\n now %+v", what, prev, now)
	}
}

// syncedOnOwnVault is a namespace with a Keyway connection and a binding "app" synced
// from the test's own vault (K=1), with that vault's pull counter.
func syncedOnOwnVault(t *testing.T) (ns string, vc *kf.VaultConnection, b *kf.SecretBinding, vaultName, pulls string) {
	t.Helper()
	ns = newNamespace(t, nil)
	vc, cred := connectionFor(ns, "keyway", "keyway")
	vaultName, pulls = ownVault(ns, "K", "1")
	b = bindingFor(ns, "app", "keyway", "keyway")
	b.Spec.Vault = vaultName
	mustCreate(t, cred, vc, b)
	waitReason(t, b, kf.ReasonSynced)
	return ns, vc, b, vaultName, pulls
}

// A suspended binding sends no request, writes no Secret (not even a deleted one back),
// handles no refresh and keeps its status; resuming syncs at once.
func TestSuspendedBindingTouchesNothing(t *testing.T) {
	ns, _, b, vaultName, pulls := syncedOnOwnVault(t)

	setSuspend(t, b, true)
	dev.SetSecret(vaultName, "production", "K", "2")
	refresh(t, b, "while-suspended")
	if err := k8s.Delete(context.Background(), getSecret(t, ns, "app")); err != nil {
		t.Fatal(err)
	}
	stays(t, "suspended binding", pulls, b, func() (bool, string) {
		return secretGone(ns, "app"), "the deleted Secret was written back"
	})

	setSuspend(t, b, false)
	eventually(t, 10*time.Second, "resumed binding writes the vault's data", func() (bool, string) {
		if secretGone(ns, "app") {
			return false, "no Secret"
		}
		got := getBinding(t, b)
		s := getSecret(t, ns, "app")
		return string(s.Data["K"]) == "2" && got.Status.LastHandledRefresh == "while-suspended" && got.Status.ObservedGeneration == got.Generation,
			"K=" + string(s.Data["K"]) + " lastHandledRefresh=" + got.Status.LastHandledRefresh
	})
}

// A suspended connection sends nothing: its bindings neither pull nor change status, its
// own status stays; resuming brings both back.
func TestSuspendedConnectionSendsNothing(t *testing.T) {
	ns, vc, b, vaultName, pulls := syncedOnOwnVault(t)
	waitConnReason(t, vc, kf.ReasonAuthenticated)

	setSuspend(t, vc, true)
	connBefore := &kf.VaultConnection{}
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(vc), connBefore); err != nil {
		t.Fatal(err)
	}
	dev.SetSecret(vaultName, "production", "K", "2")
	refresh(t, b, "conn-suspended")
	stays(t, "binding of a suspended connection", pulls, b, func() (bool, string) {
		s := getSecret(t, ns, "app")
		return string(s.Data["K"]) == "1", "the Secret changed"
	})
	connAfter := &kf.VaultConnection{}
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(vc), connAfter); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(connBefore.Status, connAfter.Status) {
		t.Fatalf("suspended connection's status changed: %+v", connAfter.Status)
	}

	setSuspend(t, vc, false)
	eventually(t, 10*time.Second, "binding syncs once its connection resumes", func() (bool, string) {
		s := getSecret(t, ns, "app")
		return string(s.Data["K"]) == "2" && getBinding(t, b).Status.LastHandledRefresh == "conn-suspended", "K=" + string(s.Data["K"])
	})
}

// A workload is not restarted for a Secret whose binding is suspended (here: edited by
// hand meanwhile); on resumption the binding restores the data, and nothing restarts.
func TestSuspendedBindingRestartsNoWorkload(t *testing.T) {
	ns := newNamespace(t, nil)
	vc, cred := connectionFor(ns, "keyway", "keyway")
	vaultName, _ := ownVault(ns, "A", "a1")
	b := bindingFor(ns, "s1", "keyway", "keyway")
	b.Spec.Vault = vaultName
	mustCreate(t, cred, vc, b)
	waitReason(t, b, kf.ReasonSynced)
	w := deploymentReading(ns, "reader", read{"s1", "env", "A"})
	mustCreate(t, w)
	eventually(t, 20*time.Second, "the workload records what it reads", func() (bool, string) {
		_, _, consumed := restartState(t, w)
		return consumed != "", "nothing recorded"
	})

	setSuspend(t, b, true)
	s := getSecret(t, ns, "s1")
	mergePatch(t, s, map[string]any{"stringData": map[string]string{"A": "edited-by-hand"}})
	// Longer than the suite's restart debounce (5s).
	time.Sleep(7 * time.Second)
	if _, restartedFor, _ := restartState(t, w); restartedFor != "" {
		t.Fatalf("restarted for a suspended binding's Secret (%s)", restartedFor)
	}
	setSuspend(t, b, false)
	eventually(t, 10*time.Second, "resumed binding repairs the hand edit", func() (bool, string) {
		v := string(getSecret(t, ns, "s1").Data["A"])
		return v == "a1", "A=" + v
	})
	time.Sleep(6 * time.Second)
	if _, restartedFor, _ := restartState(t, w); restartedFor != "" {
		t.Fatalf("restarted although the data it reads is what it started with (%s)", restartedFor)
	}
}

// refreshPolicy: Periodic reads the vault every interval; OnChange only on a spec change,
// the refresh annotation or drift; CreatedOnce writes once and only writes again a deleted
// Secret.
func TestRefreshPolicies(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, nil)
	vc, cred := connectionFor(ns, "keyway", "keyway")
	mustCreate(t, cred, vc)
	type tenant struct {
		b     *kf.SecretBinding
		pulls string
	}
	tenants := map[kf.RefreshPolicy]*tenant{}
	for _, p := range []kf.RefreshPolicy{kf.RefreshPolicyPeriodic, kf.RefreshPolicyOnChange, kf.RefreshPolicyCreatedOnce} {
		name := map[kf.RefreshPolicy]string{kf.RefreshPolicyPeriodic: "periodic", kf.RefreshPolicyOnChange: "onchange", kf.RefreshPolicyCreatedOnce: "createdonce"}[p]
		vaultName, pulls := ownVault(ns+"-"+name, "K", "1")
		b := bindingFor(ns, name, "keyway", "keyway")
		b.Spec.Vault, b.Spec.RefreshPolicy = vaultName, p
		b.Spec.RefreshInterval = &metav1.Duration{Duration: 10 * time.Second}
		mustCreate(t, b)
		tenants[p] = &tenant{b: b, pulls: pulls}
	}
	for _, tn := range tenants {
		waitReason(t, tn.b, kf.ReasonSynced)
		dev.SetSecret(tn.b.Spec.Vault, "production", "K", "2")
	}
	periodic, onChange, once := tenants[kf.RefreshPolicyPeriodic], tenants[kf.RefreshPolicyOnChange], tenants[kf.RefreshPolicyCreatedOnce]
	for _, tn := range []*tenant{onChange, once} {
		if got := getBinding(t, tn.b); got.Status.NextSyncTime != nil {
			t.Errorf("%s plans a next sync at %v", tn.b.Name, got.Status.NextSyncTime)
		}
	}
	// Past one interval (10s, jittered up to 10%): only Periodic reads again. (Waited for,
	// not slept: under load the refresh may come a little late; once it came, an interval
	// has passed for the others too.)
	value := func(tn *tenant) string { return string(getSecret(t, ns, tn.b.Name).Data["K"]) }
	eventually(t, 30*time.Second, "Periodic reads again after its interval", func() (bool, string) {
		return value(periodic) == "2" && dev.Count(periodic.pulls) >= 2, fmt.Sprintf("K=%s after %d pulls", value(periodic), dev.Count(periodic.pulls))
	})
	time.Sleep(time.Second)
	for _, tn := range []*tenant{onChange, once} {
		if value(tn) != "1" || dev.Count(tn.pulls) != 1 {
			t.Fatalf("%s: K=%s after %d pulls, want 1 and one pull", tn.b.Name, value(tn), dev.Count(tn.pulls))
		}
	}

	// The refresh annotation: OnChange reads; CreatedOnce answers it without a request.
	refresh(t, onChange.b, "r1")
	refresh(t, once.b, "r1")
	for _, tn := range []*tenant{onChange, once} {
		eventually(t, 10*time.Second, tn.b.Name+" handles the refresh", func() (bool, string) {
			got := getBinding(t, tn.b).Status.LastHandledRefresh
			return got == "r1", got
		})
	}
	if value(onChange) != "2" || value(once) != "1" || dev.Count(once.pulls) != 1 {
		t.Fatalf("after refresh: OnChange K=%s, CreatedOnce K=%s (%d pulls)", value(onChange), value(once), dev.Count(once.pulls))
	}

	// Drift: OnChange repairs a hand edit, CreatedOnce leaves it.
	for _, tn := range []*tenant{onChange, once} {
		mergePatch(t, getSecret(t, ns, tn.b.Name), map[string]any{"stringData": map[string]string{"K": "hand"}})
	}
	eventually(t, 10*time.Second, "OnChange repairs drift", func() (bool, string) { return value(onChange) == "2", value(onChange) })
	time.Sleep(time.Second)
	if value(once) != "hand" {
		t.Fatalf("CreatedOnce rewrote a Secret edited by hand: K=%s", value(once))
	}

	// A spec change: CreatedOnce handles the generation, writes nothing, says why.
	mergePatch(t, once.b, map[string]any{"spec": map[string]any{"rename": map[string]string{"K": "RENAMED"}}})
	eventually(t, 10*time.Second, "CreatedOnce handles a new generation", func() (bool, string) {
		got := getBinding(t, once.b)
		ready := readyCondition(got.Status.Conditions)
		return got.Status.ObservedGeneration == got.Generation && ready != nil && ready.Status == "True", ready.String()
	})
	if s := getSecret(t, ns, once.b.Name); string(s.Data["K"]) != "hand" || s.Data["RENAMED"] != nil {
		t.Fatalf("CreatedOnce updated its Secret on a spec change: keys %v", keysOf(s.Data))
	}

	// Deleted: CreatedOnce writes it again, from the vault, with the current spec.
	if err := k8s.Delete(ctx, getSecret(t, ns, once.b.Name)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "CreatedOnce writes a deleted Secret again", func() (bool, string) {
		if secretGone(ns, once.b.Name) {
			return false, "gone"
		}
		s := getSecret(t, ns, once.b.Name)
		return string(s.Data["RENAMED"]) == "2", fmt.Sprint("keys ", keysOf(s.Data))
	})
}
