package main

import (
	"context"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// fanoutResult is one way of giving N namespaces the same binding.
type fanoutResult struct {
	ready                   time.Duration
	pullsFirst, pullsPerInt float64
}

// runFanout compares one ClusterSecretBinding over N namespaces with N SecretBindings
// written by hand (one per namespace), both on one ClusterVaultConnection, vault and
// environment, each on a fresh stack: the time from the managers' start until all N
// bindings are Ready, the pulls of the first sync and per refresh interval afterwards.
func runFanout(p params) error {
	plain, err := fanoutOnce(p, false)
	if err != nil {
		return err
	}
	fan, err := fanoutOnce(p, true)
	if err != nil {
		return err
	}
	fmt.Printf("| %d | %d | %.1f | %.0f | %.1f | %.1f | %.0f | %.1f | %.2f× |\n", p.n, p.shards,
		plain.ready.Seconds(), plain.pullsFirst, plain.pullsPerInt,
		fan.ready.Seconds(), fan.pullsFirst, fan.pullsPerInt, fan.ready.Seconds()/plain.ready.Seconds())
	return nil
}

func fanoutOnce(p params, cluster bool) (fanoutResult, error) {
	var res fanoutResult
	ctx := context.Background()
	st, stop, err := startStack(ctx, p, 1, []string{"--keyway-limit", "0"})
	if err != nil {
		return res, err
	}
	defer stop()
	c, err := newClient(st.Kubeconfig)
	if err != nil {
		return res, err
	}
	if err := createFanoutConnection(ctx, c, st.VaultURL); err != nil {
		return res, err
	}
	if err := parallel(p.n, func(i int) error {
		ns := benchNamespace(i)
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
			Labels: map[string]string{"bench/fanout": "true"}}}); err != nil {
			return err
		}
		if cluster {
			return nil
		}
		return c.Create(ctx, &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shared"}, Spec: fanoutSpec(p)})
	}); err != nil {
		return res, err
	}
	if cluster {
		if err := c.Create(ctx, &kf.ClusterSecretBinding{ObjectMeta: metav1.ObjectMeta{Name: "shared"}, Spec: kf.ClusterSecretBindingSpec{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"bench/fanout": "true"}},
			Template:          kf.BindingTemplate{Spec: fanoutSpec(p)},
		}}); err != nil {
			return res, err
		}
	}
	w, err := watchReady(ctx, c)
	if err != nil {
		return res, err
	}
	defer w.Stop()
	before := counts(st)
	start := time.Now()
	if _, err := startManagers(st, p); err != nil {
		return res, err
	}
	if err := w.wait(p.n, 15*time.Minute); err != nil {
		return res, err
	}
	res.ready = time.Since(start)
	first := counts(st)
	res.pullsFirst = float64(first["keyway.pull"] - before["keyway.pull"])
	time.Sleep(time.Duration(p.intervals)*p.interval + p.interval/5)
	end := counts(st)
	res.pullsPerInt = float64(end["keyway.pull"]-first["keyway.pull"]) / float64(p.intervals)
	what := "plain bindings"
	if cluster {
		what = "one ClusterSecretBinding"
	}
	fmt.Fprintf(os.Stderr, "%d namespaces, %s: Ready in %s, %v pulls first, %.1f per interval\n", p.n, what, res.ready, res.pullsFirst, res.pullsPerInt)
	return res, nil
}

// createFanoutConnection creates the shared ClusterVaultConnection (its token in
// keyferry-system) lent to the bench namespaces.
func createFanoutConnection(ctx context.Context, c client.Client, vaultURL string) error {
	if err := createNamespace(ctx, c, "keyferry-system"); err != nil {
		return err
	}
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "keyferry-system", Name: "bench-token",
		Labels: map[string]string{kf.LabelCredentials: "true"}},
		StringData: map[string]string{"token": "kw_live_bench"}}); err != nil {
		return err
	}
	return c.Create(ctx, &kf.ClusterVaultConnection{ObjectMeta: metav1.ObjectMeta{Name: "shared"}, Spec: kf.ClusterVaultConnectionSpec{
		VaultConnectionSpec: kf.VaultConnectionSpec{Provider: kf.ProviderKeyway, URL: vaultURL + "/keyway", AllowInsecureHTTP: true,
			Auth: kf.AuthSpec{Bearer: &kf.BearerAuth{SecretRef: kf.SecretKeyReference{Namespace: "keyferry-system", Name: "bench-token", Key: "token"}}}},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"bench/fanout": "true"}},
	}})
}

func fanoutSpec(p params) kf.SecretBindingSpec {
	return kf.SecretBindingSpec{ConnectionRef: kf.ConnectionReference{Name: "shared", Kind: kf.ConnectionKindCluster},
		Vault: "bench/app", Environment: "env-0", RefreshInterval: &metav1.Duration{Duration: p.interval}}
}
