//go:build upgrade

package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// previous and current are the two releases the proof moves between.
var previous, current *published

func TestMain(m *testing.M) { os.Exit(runUpgrade(m)) }

// runUpgrade starts the node, serves both releases from one registry on its veth and
// installs the previous one, as a user who installed it months ago would have it.
func runUpgrade(m *testing.M) int {
	manifestVersion = "keyferry.dev/v1alpha1"
	root := repoRoot()
	err := startNode(root)
	if node != nil {
		defer node.Stop()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	reg, err := startRegistry()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if previous, err = reg.publish(root, filepath.Join(root, "bin", "release-previous")); err != nil {
		fmt.Fprintln(os.Stderr, "publishing the previous release:", err)
		return 1
	}
	if current, err = reg.publish(root, filepath.Join(root, "bin", "release")); err != nil {
		fmt.Fprintln(os.Stderr, "publishing this release:", err)
		return 1
	}
	if err := helm(root, previous.installArgs("install", "--create-namespace", "--wait", "--timeout", "3m")...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		managerLogs()
		return 1
	}
	code := m.Run()
	if code != 0 {
		managerLogs()
	}
	return code
}

const (
	upgradeNamespaces = 3   // each with a VaultConnection
	bindingsEach      = 100 // SecretBindings per connection
	environments      = 5
	fannedNamespaces  = 20 // selected by the ClusterSecretBinding
	workloads         = 30
)

// observeFor is how long the proof watches after each step (KEYFERRY_UPGRADE_OBSERVE).
func observeFor() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("KEYFERRY_UPGRADE_OBSERVE")); err == nil {
		return d
	}
	return 2 * time.Minute
}

// Upgrading keyferry, and rolling it back, is a non-event: across each step and the
// minutes after it, no managed Secret is written, no workload restarts, the vault gets no
// request beyond its schedule, no object leaves Ready, and no status field is lost.
func TestUpgradeAndRollbackAreNonEvents(t *testing.T) {
	root := repoRoot()
	vaultCA = devVault(t)
	start := time.Now()
	populate(t, vaultCA)
	t.Logf("step: %d bindings over %d connections, a ClusterSecretBinding over %d namespaces, a SecretPush and %d Deployments Ready in %v",
		upgradeNamespaces*bindingsEach, upgradeNamespaces, fannedNamespaces, workloads, time.Since(start).Round(time.Second))

	cfg, err := clientcmd.BuildConfigFromFlags("", node.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		into *published
		run  func() error
		ok   func() (bool, string)
	}{
		{"helm upgrade to " + current.version, current, func() error {
			// --reset-then-reuse-values: the new chart's defaults for values the old
			// release did not know, the user's own settings kept.
			return helm(root, current.installArgs("upgrade", "--reset-then-reuse-values", "--wait", "--timeout", "3m")...)
		}, current.pulledByDigest},
		{"helm rollback to " + previous.version, previous, func() error {
			return helm(root, "rollback", "keyferry", "1", "-n", "keyferry-system", "--wait", "--timeout", "3m")
		}, func() (bool, string) { return managersRun(previous.repository + ":v" + previous.version) }},
	}
	for _, step := range steps {
		before := snapshot(t, dyn)
		obs := observe(t, dyn)
		counts := vaultCounts(t)
		t.Logf("%s: starting", step.name)
		t0 := time.Now()
		if err := step.run(); err != nil {
			obs.stop()
			t.Fatalf("%s: %v", step.name, err)
		}
		waitFor(t, 3*time.Minute, step.name+": every manager pod on the new image", step.ok)
		took := time.Since(t0)
		time.Sleep(observeFor())
		o := obs.stop()
		requests := diffCounts(counts, vaultCounts(t))
		if step.into == previous {
			var known []string
			o, requests, known = previousDefects(previous.version, o, requests)
			for _, k := range known {
				t.Logf("step: %s: a restart defect of %s (fixed since): %s", step.name, previous.version, k)
			}
		}
		after := snapshot(t, dyn)
		lost := lostStatusFields(before, after)
		t.Logf("step: %s took %v; then %v watched: %d Secret writes, %d new ReplicaSets, %d Ready→not-Ready transitions, provider requests %v, %d status fields lost",
			step.name, took.Round(time.Second), observeFor(), o.secretWrites, o.newReplicaSets, len(o.readyDrops), requests, len(lost))
		if o.secretWrites != 0 {
			t.Errorf("%s: %d managed Secret writes (%v)", step.name, o.secretWrites, o.secretNames)
		}
		if o.newReplicaSets != 0 {
			t.Errorf("%s: %d new ReplicaSets: workloads restarted (%v)", step.name, o.newReplicaSets, o.rsNames)
		}
		if len(o.readyDrops) != 0 {
			t.Errorf("%s: objects left Ready: %v", step.name, o.readyDrops)
		}
		if len(requests) != 0 {
			t.Errorf("%s: provider requests beyond the schedule (every binding's interval is 1h): %v", step.name, requests)
		}
		if len(lost) != 0 {
			t.Errorf("%s: status fields lost: %v", step.name, lost[:min(len(lost), 10)])
		}
		if step.into == current {
			sameAtBothVersions(t, dyn)
		}
	}
}

// sameAtBothVersions: after the upgrade every object the previous release made at
// v1alpha1 reads at v1beta1 with the same spec and generation (None conversion; status
// moves on its own, so it is not compared between two reads), and nothing moved
// the storage version (a rollback must still apply the previous release's CRDs).
func sameAtBothVersions(t *testing.T, dyn dynamic.Interface) {
	t.Helper()
	ctx := context.Background()
	n := 0
	for _, gvr := range keyferryKinds {
		alpha, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		beta, err := dyn.Resource(schema.GroupVersionResource{Group: gvr.Group, Version: "v1beta1", Resource: gvr.Resource}).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("%s at v1beta1: %v", gvr.Resource, err)
		}
		at := map[string]unstructured.Unstructured{}
		for _, u := range beta.Items {
			at[u.GetNamespace()+"/"+u.GetName()] = u
		}
		for _, a := range alpha.Items {
			b, ok := at[a.GetNamespace()+"/"+a.GetName()]
			if !ok || !equality.Semantic.DeepEqual(a.Object["spec"], b.Object["spec"]) || a.GetGeneration() != b.GetGeneration() {
				t.Errorf("%s %s/%s differs at v1beta1", gvr.Resource, a.GetNamespace(), a.GetName())
			}
			n++
		}
	}
	crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, gvr := range keyferryKinds {
		crd, err := dyn.Resource(crds).Get(ctx, gvr.Resource+"."+gvr.Group, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		stored, _, _ := unstructured.NestedStringSlice(crd.Object, "status", "storedVersions")
		if len(stored) != 1 || stored[0] != "v1alpha1" {
			t.Errorf("%s: storedVersions %v after the upgrade, want [v1alpha1] (this release still stores v1alpha1)", crd.GetName(), stored)
		}
	}
	t.Logf("step: %d objects read the same at v1alpha1 and v1beta1; storedVersions stay [v1alpha1]", n)
}

// previousDefects takes out of a rollback's observation what the release rolled back to
// is known to do on any restart, fixed in this one (found by this proof), and says what it
// took out. Only those exact symptoms: anything else still fails.
//
// v0.1.0: a static-token connection says Unknown ("credentials loaded; the first request
// will verify them") after a restart until its next pull; a SecretPush checks the vault
// again at once after a restart (one read of its environment).
func previousDefects(version string, o observation, requests map[string]int) (observation, map[string]int, []string) {
	if version != "0.1.0" {
		return o, requests, nil
	}
	var known, drops []string
	for _, d := range o.readyDrops {
		if strings.Contains(d, "connections/") && strings.Contains(d, "credentials loaded; the first request will verify them") {
			known = append(known, "left Ready: "+d)
			continue
		}
		drops = append(drops, d)
	}
	o.readyDrops = drops
	const pushRead = "keyway.pull:acme/pushed/production"
	if n := requests[pushRead]; n == 1 && requests["keyway.pull"] == 1 {
		known = append(known, "the SecretPush read its environment again (1 request)")
		delete(requests, pushRead)
		delete(requests, "keyway.pull")
	}
	return o, requests, known
}

// populate creates what a user of the previous release has, and waits until it is Ready.
func populate(t *testing.T, caPEM string) {
	t.Helper()
	// The Service answers once kube-proxy has its endpoint (until then: unreachable).
	waitFor(t, time.Minute, "the dev vault through its Service", func() (bool, string) {
		_, err := tryVaultCounts()
		return err == nil, fmt.Sprint(err)
	})
	for e := range environments {
		setVault(t, caPEM, "acme/upgrade", fmt.Sprintf("env-%d", e), "API_KEY", fmt.Sprintf("value-%d", e))
	}
	setVault(t, caPEM, "acme/pushed", "production", "SEED", "1")
	var b strings.Builder
	for n := range upgradeNamespaces {
		ns := fmt.Sprintf("up-%d", n)
		b.WriteString("---\n" + keywayConnection(ns, caPEM))
		for i := range bindingsEach {
			fmt.Fprintf(&b, `---
apiVersion: keyferry.dev/v1alpha1
kind: SecretBinding
metadata: {name: b-%[2]d, namespace: %[1]s}
spec:
  connectionRef: {name: keyway}
  vault: acme/upgrade
  environment: env-%[3]d
`, ns, i, i%environments)
		}
	}
	b.WriteString("---\n" + platformConnection("up-platform", "upgrade/fanned", caPEM))
	b.WriteString(`---
apiVersion: keyferry.dev/v1alpha1
kind: ClusterSecretBinding
metadata: {name: shared}
spec:
  namespaceSelector: {matchLabels: {upgrade/fanned: "true"}}
  bindingName: shared
  template:
    spec:
      connectionRef: {kind: ClusterVaultConnection, name: platform}
      vault: acme/upgrade
      environment: env-0
`)
	for i := range fannedNamespaces {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: fan-%02d, labels: {upgrade/fanned: \"true\"}}\n", i)
	}
	fmt.Fprintf(&b, `---
apiVersion: v1
kind: Secret
metadata: {name: generated, namespace: up-0, labels: {keyferry.dev/push: "true"}}
stringData: {DB_PASS: generated-by-an-operator}
---
apiVersion: keyferry.dev/v1alpha1
kind: SecretPush
metadata: {name: db, namespace: up-0}
spec:
  connectionRef: {name: keyway}
  vault: acme/pushed
  environment: production
  source: {name: generated}
`)
	for i := range workloads {
		b.WriteString("---\n" + restartingApp("up-1", fmt.Sprintf("app-%d", i), fmt.Sprintf("b-%d", i), "API_KEY"))
	}
	apply(t, b.String())
	for n := range upgradeNamespaces {
		kubectl(t, "wait", "--for=condition=Ready", "--timeout=5m", "-n", fmt.Sprintf("up-%d", n), "secretbindings", "--all")
	}
	kubectl(t, "wait", "--for=condition=Ready", "--timeout=3m", "clustersecretbinding/shared")
	kubectl(t, "wait", "--for=condition=Ready", "--timeout=3m", "-n", "up-0", "secretpush/db")
	kubectl(t, "wait", "--for=condition=Available", "--timeout=5m", "-n", "up-1", "deployments", "--all")
	// The first restarts of the workloads (their consumed data recorded) have settled.
	time.Sleep(10 * time.Second)
}

// managersRun says whether every manager pod runs image.
func managersRun(image string) (bool, string) {
	out, err := node.Kubectl(context.Background(), "get", "pods", "-n", "keyferry-system", "-l", "app.kubernetes.io/name=keyferry",
		"-o", `jsonpath={range .items[*]}{.spec.containers[0].image} {.status.phase}{"\n"}{end}`)
	if err != nil {
		return false, err.Error()
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		if l != image+" Running" {
			return false, out
		}
	}
	return len(lines) > 0, out
}

var keyferryKinds = []schema.GroupVersionResource{
	{Group: "keyferry.dev", Version: "v1alpha1", Resource: "secretbindings"},
	{Group: "keyferry.dev", Version: "v1alpha1", Resource: "clustersecretbindings"},
	{Group: "keyferry.dev", Version: "v1alpha1", Resource: "secretpushes"},
	{Group: "keyferry.dev", Version: "v1alpha1", Resource: "vaultconnections"},
	{Group: "keyferry.dev", Version: "v1alpha1", Resource: "clustervaultconnections"},
}

// snapshot is every keyferry object's status, by kind/namespace/name.
func snapshot(t *testing.T, dyn dynamic.Interface) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, gvr := range keyferryKinds {
		list, err := dyn.Resource(gvr).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range list.Items {
			st, _, _ := unstructured.NestedMap(u.Object, "status")
			out[gvr.Resource+"/"+u.GetNamespace()+"/"+u.GetName()] = st
		}
	}
	return out
}

// lostStatusFields lists the status fields (paths of map keys) before had that after lacks.
func lostStatusFields(before, after map[string]map[string]any) []string {
	var lost []string
	var walk func(prefix string, b, a map[string]any)
	walk = func(prefix string, b, a map[string]any) {
		for k, bv := range b {
			av, ok := a[k]
			if !ok {
				lost = append(lost, prefix+"."+k)
				continue
			}
			if bm, ok := bv.(map[string]any); ok {
				if am, ok := av.(map[string]any); ok {
					walk(prefix+"."+k, bm, am)
				}
			}
		}
	}
	for key, b := range before {
		a, ok := after[key]
		if !ok {
			lost = append(lost, key+" (the object)")
			continue
		}
		walk(key+" status", b, a)
	}
	return lost
}

// observation is what the watches saw.
type observation struct {
	secretWrites, newReplicaSets int
	secretNames, rsNames         []string
	readyDrops                   []string
	stop                         func() observation
}

// observe watches managed Secrets (writes), ReplicaSets (new ones: restarts) and every
// keyferry object (Ready leaving True) until stop.
func observe(t *testing.T, dyn dynamic.Interface) *observation {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	o := &observation{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	follow := func(gvr schema.GroupVersionResource, opts metav1.ListOptions, on func(watch.Event, *unstructured.Unstructured)) {
		list, err := dyn.Resource(gvr).List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		opts.ResourceVersion = list.GetResourceVersion()
		w, err := dyn.Resource(gvr).Watch(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case ev, ok := <-w.ResultChan():
					if !ok {
						return
					}
					if u, ok := ev.Object.(*unstructured.Unstructured); ok {
						mu.Lock()
						on(ev, u)
						mu.Unlock()
					}
				}
			}
		}()
	}
	follow(schema.GroupVersionResource{Version: "v1", Resource: "secrets"}, metav1.ListOptions{LabelSelector: "keyferry.dev/binding"},
		func(ev watch.Event, u *unstructured.Unstructured) {
			if ev.Type == watch.Modified || ev.Type == watch.Deleted {
				o.secretWrites++
				o.secretNames = append(o.secretNames, u.GetNamespace()+"/"+u.GetName())
			}
		})
	follow(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}, metav1.ListOptions{},
		func(ev watch.Event, u *unstructured.Unstructured) {
			// keyferry's own pods roll out by design; the proof is about the workloads.
			if ev.Type == watch.Added && u.GetNamespace() != "keyferry-system" {
				o.newReplicaSets++
				o.rsNames = append(o.rsNames, u.GetNamespace()+"/"+u.GetName())
			}
		})
	ready := map[string]bool{}
	for _, gvr := range keyferryKinds {
		follow(gvr, metav1.ListOptions{}, func(ev watch.Event, u *unstructured.Unstructured) {
			key := gvr.Resource + "/" + u.GetNamespace() + "/" + u.GetName()
			now := readyTrue(u)
			if was, seen := ready[key]; (seen && was || !seen) && !now {
				o.readyDrops = append(o.readyDrops, key+" ("+readyReason(u)+")")
			}
			ready[key] = now
		})
	}
	o.stop = func() observation {
		cancel()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return *o
	}
	return o
}

func readyReason(u *unstructured.Unstructured) string {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Ready" {
			return fmt.Sprint(m["status"], " ", m["reason"], ": ", m["message"])
		}
	}
	return "no Ready condition"
}

func readyTrue(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Ready" {
			return m["status"] == "True"
		}
	}
	return false
}

// diffCounts is what changed between two readings (endpoint → requests).
func diffCounts(before, after map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}
