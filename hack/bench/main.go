// Command bench measures keyferry at scale on this machine: the local control plane, the
// dev vault and the manager binary, with N bindings over E environments and C
// connections, and U unrelated Secrets created beforehand. It prints one Markdown table
// row per run. Counts come from the dev vault and the API server, not from guesses.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
	"github.com/keyferry/keyferry/internal/localstack"
)

type params struct {
	n, e, c, u    int
	interval      time.Duration
	keywayLimit   int
	keywayWindow  time.Duration
	intervals     int
	ceilingWrites int
	managerArgs   string
	managerEnv    string
}

func main() {
	var p params
	flag.IntVar(&p.n, "n", 1000, "bindings")
	flag.IntVar(&p.e, "e", 10, "environments")
	flag.IntVar(&p.c, "c", 1, "connections")
	flag.IntVar(&p.u, "u", 0, "unrelated Secrets of 10 KiB created beforehand")
	flag.DurationVar(&p.interval, "interval", 30*time.Second, "refreshInterval of every binding")
	flag.IntVar(&p.intervals, "intervals", 2, "refresh intervals observed after the first sync")
	flag.IntVar(&p.keywayLimit, "keyway-limit", 0, "dev vault limit per window (0: none)")
	flag.DurationVar(&p.keywayWindow, "keyway-window", 15*time.Minute, "dev vault rate-limit window")
	flag.IntVar(&p.ceilingWrites, "ceiling", 2000, "Secret creates used to measure the raw write ceiling")
	flag.StringVar(&p.managerArgs, "manager-args", "", "extra manager flags, space separated")
	flag.StringVar(&p.managerEnv, "manager-env", "", "extra manager environment, space separated NAME=value (e.g. GOMEMLIMIT=120MiB)")
	header := flag.Bool("header", false, "print the table header first")
	flag.Parse()
	if *header {
		fmt.Println("| N | E | C | U | ready (s) | write ceiling (creates/s) | pulls first sync | logins | pulls per interval | over-limit answers | steady writes | peak RSS (MiB) | CPU (s) |")
		fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	}
	if err := run(p); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(p params) error {
	ctx := context.Background()
	root, _ := os.Getwd()
	dir, err := os.MkdirTemp("", "keyferry-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	dataFile := filepath.Join(dir, "vault.json")
	if err := writeVaultData(dataFile, p.e); err != nil {
		return err
	}
	vaultArgs := []string{"--keyway-limit", strconv.Itoa(p.keywayLimit), "--keyway-window", p.keywayWindow.String(), "--keyway-over-limit-status", "429"}
	st, err := localstack.Start(ctx, localstack.Options{RepoRoot: root, VaultData: dataFile, VaultArgs: vaultArgs,
		ManagerArgs: strings.Fields(p.managerArgs), ManagerEnv: strings.Fields(p.managerEnv), Progress: os.Stderr})
	if err != nil {
		return err
	}
	defer st.Stop()
	c, err := newClient(st.Kubeconfig)
	if err != nil {
		return err
	}
	ceiling, err := writeCeiling(ctx, c, p.ceilingWrites)
	if err != nil {
		return err
	}
	if err := createUnrelated(ctx, c, p.u); err != nil {
		return err
	}
	if err := createBindings(ctx, c, st.VaultURL, p); err != nil {
		return err
	}

	before := counts(st)
	start := time.Now()
	if err := st.StartManager(); err != nil {
		return err
	}
	sampler := newSampler(st.ManagerPID())
	defer sampler.stop()
	if err := waitReady(ctx, c, p.n, 10*time.Minute); err != nil {
		return err
	}
	ready := time.Since(start)
	first := counts(st)

	// Let the first sync settle, then watch the given refresh intervals.
	time.Sleep(2 * time.Second)
	versions, err := resourceVersions(ctx, c)
	if err != nil {
		return err
	}
	mid := counts(st)
	time.Sleep(time.Duration(p.intervals)*p.interval + p.interval/5)
	end := counts(st)
	after, err := resourceVersions(ctx, c)
	if err != nil {
		return err
	}
	changed := 0
	for k, v := range after {
		if versions[k] != v {
			changed++
		}
	}
	// Steady writes count only objects changed while nothing changed in the vault.
	peak, cpu := sampler.stop()
	fmt.Printf("| %d | %d | %d | %d | %.1f | %.0f | %d | %d | %.1f | %d | %d | %.0f | %.1f |\n",
		p.n, p.e, p.c, p.u, ready.Seconds(), ceiling,
		first["keyway.pull"]-before["keyway.pull"], end["keyway.login"]-before["keyway.login"],
		float64(end["keyway.pull"]-mid["keyway.pull"])/float64(p.intervals),
		end["keyway.over-limit"]-before["keyway.over-limit"], changed, float64(peak)/1024, cpu)
	return nil
}

func newClient(kubeconfig string) (client.Client, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 2000, 4000
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(kf.AddToScheme(s))
	return client.New(cfg, client.Options{Scheme: s})
}

func writeVaultData(path string, envs int) error {
	vals := map[string]map[string]string{}
	for e := 0; e < envs; e++ {
		env := map[string]string{}
		for k := 0; k < 20; k++ {
			env[fmt.Sprintf("KEY_%02d", k)] = strings.Repeat("v", 40) + strconv.Itoa(e)
		}
		vals[fmt.Sprintf("env-%d", e)] = env
	}
	b, err := json.Marshal(map[string]any{
		"vaults": map[string]any{"bench/app": vals},
		"tokens": []string{"kw_live_bench"},
	})
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// parallel runs f(i) for i in [0, n) on 32 workers.
func parallel(n int, f func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func createNamespace(ctx context.Context, c client.Client, name string) error {
	return client.IgnoreAlreadyExists(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}))
}

// writeCeiling measures the API server's Secret create rate from 32 parallel clients.
func writeCeiling(ctx context.Context, c client.Client, n int) (float64, error) {
	if err := createNamespace(ctx, c, "ceiling"); err != nil {
		return 0, err
	}
	start := time.Now()
	err := parallel(n, func(i int) error {
		return c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ceiling", Name: fmt.Sprintf("s-%d", i)},
			Data: map[string][]byte{"k": []byte("v")}})
	})
	return float64(n) / time.Since(start).Seconds(), err
}

func createUnrelated(ctx context.Context, c client.Client, n int) error {
	if n == 0 {
		return nil
	}
	if err := createNamespace(ctx, c, "unrelated"); err != nil {
		return err
	}
	blob := []byte(strings.Repeat("x", 10<<10))
	return parallel(n, func(i int) error {
		return c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "unrelated", Name: fmt.Sprintf("u-%d", i)},
			Data: map[string][]byte{"blob": blob}})
	})
}

func createBindings(ctx context.Context, c client.Client, vaultURL string, p params) error {
	if err := createNamespace(ctx, c, "bench"); err != nil {
		return err
	}
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "token",
		Labels: map[string]string{kf.LabelCredentials: "true"}},
		StringData: map[string]string{"token": "kw_live_bench"}}); err != nil {
		return err
	}
	for i := 0; i < p.c; i++ {
		vc := &kf.VaultConnection{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("conn-%d", i)},
			Spec: kf.VaultConnectionSpec{Provider: kf.ProviderKeyway, URL: vaultURL + "/keyway", AllowInsecureHTTP: true,
				Auth: kf.AuthSpec{Bearer: &kf.BearerAuth{SecretRef: kf.SecretKeyReference{Name: "token", Key: "token"}}}}}
		if err := c.Create(ctx, vc); err != nil {
			return err
		}
	}
	return parallel(p.n, func(i int) error {
		return c.Create(ctx, &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("b-%d", i)},
			Spec: kf.SecretBindingSpec{ConnectionRef: kf.ConnectionReference{Name: fmt.Sprintf("conn-%d", i%p.c)},
				Vault: "bench/app", Environment: fmt.Sprintf("env-%d", i%p.e),
				RefreshInterval: &metav1.Duration{Duration: p.interval}}})
	})
}

func waitReady(ctx context.Context, c client.Client, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		list := &kf.SecretBindingList{}
		if err := c.List(ctx, list, client.InNamespace("bench")); err != nil {
			return err
		}
		ready := 0
		for _, b := range list.Items {
			for _, cond := range b.Status.Conditions {
				if cond.Type == kf.ConditionReady && cond.Status == metav1.ConditionTrue {
					ready++
				}
			}
		}
		if ready == n {
			return nil
		}
		if os.Getenv("BENCH_VERBOSE") != "" {
			fmt.Fprintf(os.Stderr, "%s ready %d/%d\n", time.Now().Format("15:04:05.000"), ready, n)
		}
		// Listing every binding is itself load on this small machine: poll gently.
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("not every binding Ready after %v", timeout)
}

func resourceVersions(ctx context.Context, c client.Client) (map[string]string, error) {
	out := map[string]string{}
	bl := &kf.SecretBindingList{}
	if err := c.List(ctx, bl, client.InNamespace("bench")); err != nil {
		return nil, err
	}
	for _, b := range bl.Items {
		out["sb/"+b.Name] = b.ResourceVersion
	}
	sl := &corev1.SecretList{}
	if err := c.List(ctx, sl, client.InNamespace("bench")); err != nil {
		return nil, err
	}
	for _, s := range sl.Items {
		out["secret/"+s.Name] = s.ResourceVersion
	}
	return out, nil
}

// counts reads the dev vault's request counts, with 429 answers derived from its log-free
// endpoint (over-limit answers are counted as keyway.over-limit by the dev vault).
func counts(st *localstack.Stack) map[string]int {
	out := map[string]int{}
	resp, err := httpGet(st.VaultURL + "/debug/counts")
	if err != nil {
		return out
	}
	_ = json.Unmarshal(resp, &out)
	return out
}
