// Command bench measures keyferry at scale on this machine: the local control plane, the
// dev vault and the manager binary (one process per shard), with N bindings spread over
// namespaces, E environments and C connections per namespace, and U unrelated Secrets
// created beforehand. It prints one Markdown table
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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/dev/localstack"
)

type params struct {
	n, e, c, u    int
	namespaces    int
	shards        int
	interval      time.Duration
	keywayLimit   int
	keywayWindow  time.Duration
	intervals     int
	ceilingWrites int
	managerArgs   string
	managerEnv    string
	keepLog       string
	noisy         int
	backlog       int
	fanout        bool
	templates     bool
	hooks         bool
	trials        int
	floodRate     int
	floodFor      time.Duration
	cpuProfile    string
	profileAddr   string // shard 0's pprof address while profiling
}

func main() {
	var p params
	flag.IntVar(&p.n, "n", 1000, "bindings")
	flag.IntVar(&p.e, "e", 10, "environments")
	flag.IntVar(&p.c, "c", 1, "connections per namespace")
	flag.IntVar(&p.namespaces, "namespaces", 1, "namespaces the bindings are spread over (bench-0 ...)")
	flag.IntVar(&p.shards, "shards", 1, "manager processes, one per shard (--shard-count/--shard-index)")
	flag.IntVar(&p.u, "u", 0, "unrelated Secrets of 10 KiB created beforehand")
	flag.DurationVar(&p.interval, "interval", 30*time.Second, "refreshInterval of every binding")
	flag.IntVar(&p.intervals, "intervals", 2, "refresh intervals observed after the first sync")
	flag.IntVar(&p.keywayLimit, "keyway-limit", 0, "dev vault limit per window (0: none)")
	flag.DurationVar(&p.keywayWindow, "keyway-window", 15*time.Minute, "dev vault rate-limit window")
	flag.IntVar(&p.ceilingWrites, "ceiling", 2000, "Secret creates used to measure the raw write ceiling")
	flag.StringVar(&p.managerArgs, "manager-args", "", "extra manager flags, space separated")
	flag.StringVar(&p.managerEnv, "manager-env", "", "extra manager environment, space separated NAME=value (e.g. GOMEMLIMIT=120MiB)")
	flag.StringVar(&p.keepLog, "keep-log", "", "copy the managers' log to this file at the end")
	flag.IntVar(&p.noisy, "noisy", 0, "noisy-neighbour mode: a healthy tenant's time to Ready, idle and with N bindings of another namespace (on N/25 connections) hanging on a vault that never answers")
	flag.IntVar(&p.backlog, "backlog", 0, "noisy-neighbour mode: and right after M bindings of another namespace were created at once")
	flag.BoolVar(&p.fanout, "fanout", false, "fan-out mode: N namespaces given one binding each, by N SecretBindings and by one ClusterSecretBinding, on one ClusterVaultConnection")
	flag.BoolVar(&p.templates, "templates", false, "every binding renders a kubernetes.io/dockerconfigjson Secret and a config.json (sprig functions) from its values")
	flag.BoolVar(&p.hooks, "hooks", false, "RefreshReceiver mode: hook → N Secrets updated (p50/p99) against annotating every binding, then the manager's CPU under a flood of invalid hooks")
	flag.IntVar(&p.trials, "trials", 40, "hooks mode: vault changes, half refreshed by a hook, half by annotations")
	flag.IntVar(&p.floodRate, "flood-rate", 1000, "hooks mode: invalid hooks a second")
	flag.DurationVar(&p.floodFor, "flood-for", 10*time.Second, "hooks mode: how long the flood lasts")
	flag.StringVar(&p.cpuProfile, "cpuprofile", "", "write shard 0's CPU profile from its start until all bindings are Ready to this file (go tool pprof)")
	header := flag.Bool("header", false, "print the table header first")
	flag.Parse()
	if p.hooks {
		if *header {
			fmt.Println("| bindings | trials | hook → all Secrets p50 (ms) | p99 (ms) | pulls per hook | annotate all → all Secrets p50 (ms) | p99 (ms) | pulls per annotation round | invalid hooks/s | manager CPU idle | under the flood | writes during the flood | pulls during the flood |")
			fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
		}
		if err := runHooks(p); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if p.fanout {
		if *header {
			fmt.Println("| namespaces | shards | plain bindings ready (s) | pulls first sync | pulls per interval | ClusterSecretBinding ready (s) | pulls first sync | pulls per interval | ratio |")
			fmt.Println("|---|---|---|---|---|---|---|---|---|")
		}
		if err := runFanout(p); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if p.noisy > 0 || p.backlog > 0 {
		if *header {
			fmt.Println("| hanging bindings | hanging connections | backlog bindings | healthy tenant ready idle (s) | with the hanging tenant (s) | during the backlog (s) | backlog Ready (s) | requests hanging |")
			fmt.Println("|---|---|---|---|---|---|---|---|")
		}
		if err := runNoisy(p); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *header {
		fmt.Println("| N | namespaces | shards | E | C | U | ready (s) | write ceiling (creates/s) | ready ÷ time of 2 writes per binding | status patch ceiling (patches/s) | ready ÷ time of 1 create + 1 status patch per binding | pulls first sync | logins | pulls per interval | over-limit answers | steady writes | peak RSS per shard (MiB) | RSS growth per 1,000 bindings (MiB) | CPU to ready (s) | CPU per binding beyond an empty start (ms) |")
		fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	}
	if err := run(p); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(p params) error {
	ctx := context.Background()
	vaultArgs := []string{"--keyway-limit", strconv.Itoa(p.keywayLimit), "--keyway-window", p.keywayWindow.String(), "--keyway-over-limit-status", "429"}
	st, stop, err := startStack(ctx, p, p.e, vaultArgs)
	if err != nil {
		return err
	}
	defer stop()
	c, err := newClient(st.Kubeconfig)
	if err != nil {
		return err
	}
	ceiling, err := writeCeiling(ctx, c, p.ceilingWrites)
	if err != nil {
		return err
	}
	statusCeiling, err := statusPatchCeiling(ctx, c, p.ceilingWrites/2)
	if err != nil {
		return err
	}
	if err := createUnrelated(ctx, c, p.u); err != nil {
		return err
	}
	if err := createConnections(ctx, c, st.VaultURL, p); err != nil {
		return err
	}
	// The managers' resident set with every connection and no binding: the growth per
	// 1,000 bindings is measured from there.
	base, baseCPU, err := baseline(st, p)
	if err != nil {
		return err
	}
	if err := createBindings(ctx, c, p); err != nil {
		return err
	}
	watch, err := watchReady(ctx, c)
	if err != nil {
		return err
	}
	defer watch.Stop()

	before := counts(st)
	var prof *cpuProfiler
	if p.cpuProfile != "" {
		addr, err := profileAddr()
		if err != nil {
			return err
		}
		p.profileAddr = addr
		prof = startCPUProfile(addr)
	}
	start := time.Now()
	samplers, err := startManagers(st, p)
	if err != nil {
		return err
	}
	if err := watch.wait(p.n, 15*time.Minute); err != nil {
		return err
	}
	ready := time.Since(start)
	if prof != nil {
		if err := prof.finish(p.cpuProfile); err != nil {
			return err
		}
	}
	var cpuReady float64
	for _, s := range samplers {
		_, cpu := s.now()
		cpuReady += cpu
	}
	first := counts(st)

	// Let the first sync settle, then watch the given refresh intervals.
	time.Sleep(2 * time.Second)
	var steady int64
	for _, s := range samplers {
		rss, _ := s.now()
		steady += rss
	}
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
	var peaks []string
	for _, s := range samplers {
		peak := s.stop()
		peaks = append(peaks, fmt.Sprintf("%.0f", float64(peak)/1024))
	}
	twoWrites := 2 * float64(p.n) / ceiling
	// keyferry's own two writes: a Secret create and a status patch of a custom resource
	// (JSON, schema and CEL validation: dearer than a Secret create).
	ownWrites := float64(p.n)/ceiling + float64(p.n)/statusCeiling

	fmt.Printf("| %d | %d | %d | %d | %d | %d | %.1f | %.0f | %.1f× | %.0f | %.1f× | %d | %d | %.1f | %d | %d | %s | %.1f | %.1f | %.2f |\n",
		p.n, p.namespaces, p.shards, p.e, p.c, p.u, ready.Seconds(), ceiling, ready.Seconds()/twoWrites, statusCeiling, ready.Seconds()/ownWrites,
		first["keyway.pull"]-before["keyway.pull"], end["keyway.login"]-before["keyway.login"],
		float64(end["keyway.pull"]-mid["keyway.pull"])/float64(p.intervals),
		end["keyway.over-limit"]-before["keyway.over-limit"], changed, strings.Join(peaks, " / "),
		float64(steady-base)/1024/(float64(p.n)/1000), cpuReady, (cpuReady-baseCPU)*1000/float64(p.n))
	return nil
}

// startStack writes the dev vault's data (envs environments), starts the local stack and
// returns it with the function that stops it, keeping the managers' log with -keep-log.
func startStack(ctx context.Context, p params, envs int, vaultArgs []string) (*localstack.Stack, func(), error) {
	root, _ := os.Getwd()
	dir, err := os.MkdirTemp("", "keyferry-bench-")
	if err != nil {
		return nil, nil, err
	}
	dataFile := filepath.Join(dir, "vault.json")
	if err := writeVaultData(dataFile, envs); err != nil {
		_ = os.RemoveAll(dir)
		return nil, nil, err
	}
	st, err := localstack.Start(ctx, localstack.Options{RepoRoot: root, VaultData: dataFile, VaultArgs: vaultArgs,
		ManagerArgs: strings.Fields(p.managerArgs), ManagerEnv: strings.Fields(p.managerEnv), Progress: os.Stderr})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, nil, err
	}
	return st, func() {
		if p.keepLog != "" {
			if b, err := os.ReadFile(st.ManagerLog); err == nil {
				_ = os.WriteFile(p.keepLog, b, 0o600)
			}
		}
		st.Stop()
		_ = os.RemoveAll(dir)
	}, nil
}

// shardArgs are the flags of manager i of p.shards.
func shardArgs(p params, i int) []string {
	var args []string
	if i == 0 && p.profileAddr != "" {
		args = append(args, "--pprof-bind-address", p.profileAddr)
	}
	if p.shards <= 1 {
		return args
	}
	return append(args, "--shard-count", strconv.Itoa(p.shards), "--shard-index", strconv.Itoa(i))
}

// startManagers starts one manager per shard and follows each one's RSS and CPU.
func startManagers(st *localstack.Stack, p params) ([]*sampler, error) {
	var out []*sampler
	for i := range max(p.shards, 1) {
		r, err := st.StartReplica(shardArgs(p, i)...)
		if err != nil {
			return nil, err
		}
		out = append(out, newSampler(r.PID()))
	}
	return out, nil
}

// baseline runs the managers for a few seconds without bindings and returns the sums of
// their resident sets (KiB) and CPU seconds: what a start costs before any binding.
func baseline(st *localstack.Stack, p params) (rssKiB int64, cpuSeconds float64, err error) {
	for i := range max(p.shards, 1) {
		r, err := st.StartReplica(shardArgs(p, i)...)
		if err != nil {
			return 0, 0, err
		}
		time.Sleep(3 * time.Second)
		s := newSampler(r.PID())
		rss, cpu := s.now()
		s.stop()
		anon, file := s.split()
		fmt.Fprintf(os.Stderr, "baseline shard %d: RssAnon %d KiB, RssFile %d KiB\n", i, anon, file)
		rssKiB, cpuSeconds = rssKiB+rss, cpuSeconds+cpu
		r.Stop()
	}
	fmt.Fprintf(os.Stderr, "baseline without bindings: RSS %.0f MiB, CPU %.2f s\n", float64(rssKiB)/1024, cpuSeconds)
	return rssKiB, cpuSeconds, nil
}

func newClient(kubeconfig string) (client.WithWatch, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 2000, 4000
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(kf.AddToScheme(s))
	return client.NewWithWatch(cfg, client.Options{Scheme: s})
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

// benchTemplates are what -templates renders: an image pull config and a JSON file of
// every value, the two shapes users ask for most.
var benchTemplates = map[string]string{
	".dockerconfigjson": `{{ dict "auths" (dict "registry.bench.local" (dict "auth" (printf "%s:%s" .KEY_00 .KEY_01 | b64enc))) | toJson }}`,
	"config.json":       `{{ dict "db" (dict "user" .KEY_02 "password" .KEY_03) "keys" (list .KEY_04 .KEY_05 .KEY_06) | toPrettyJson }}`,
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

// statusPatchCeiling measures the API server's SecretBinding status patch rate from 32
// parallel clients, on n bindings created for it (and deleted after, before any manager runs).
func statusPatchCeiling(ctx context.Context, c client.Client, n int) (float64, error) {
	err := parallel(n, func(i int) error {
		return c.Create(ctx, &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "ceiling", Name: fmt.Sprintf("b-%d", i)},
			Spec: kf.SecretBindingSpec{ConnectionRef: kf.ConnectionReference{Name: "none"}, Vault: "v", Environment: "e"}})
	})
	if err != nil {
		return 0, err
	}
	start := time.Now()
	err = parallel(n, func(i int) error {
		b := &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "ceiling", Name: fmt.Sprintf("b-%d", i)}}
		now := metav1.Now()
		b.Status = kf.SecretBindingStatus{ObservedGeneration: 1, LastSyncTime: &now, NextSyncTime: &now, SyncedKeys: 20,
			Conditions: []metav1.Condition{{Type: kf.ConditionReady, Status: metav1.ConditionTrue, Reason: "Synced",
				Message: "20 keys synced", LastTransitionTime: now, ObservedGeneration: 1}}}
		return c.Status().Patch(ctx, b, client.Merge)
	})
	rate := float64(n) / time.Since(start).Seconds()
	if err != nil {
		return 0, err
	}
	return rate, c.DeleteAllOf(ctx, &kf.SecretBinding{}, client.InNamespace("ceiling"))
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

func benchNamespace(i int) string { return fmt.Sprintf("bench-%d", i) }

// createConnections creates, in each bench namespace, the token Secret and C connections.
func createConnections(ctx context.Context, c client.Client, vaultURL string, p params) error {
	return parallel(p.namespaces, func(i int) error {
		ns := benchNamespace(i)
		if err := createNamespace(ctx, c, ns); err != nil {
			return err
		}
		if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "token",
			Labels: map[string]string{kf.LabelCredentials: "true"}},
			StringData: map[string]string{"token": "kw_live_bench"}}); err != nil {
			return err
		}
		for j := 0; j < p.c; j++ {
			vc := &kf.VaultConnection{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("conn-%d", j)},
				Spec: kf.VaultConnectionSpec{Provider: kf.ProviderKeyway, URL: vaultURL + "/keyway", AllowInsecureHTTP: true,
					Auth: kf.AuthSpec{Bearer: &kf.BearerAuth{SecretRef: kf.SecretKeyReference{Name: "token", Key: "token"}}}}}
			if err := c.Create(ctx, vc); err != nil {
				return err
			}
		}
		return nil
	})
}

// createBindings spreads the bindings so that every (namespace, environment, connection)
// is used: the first sync should pull exactly namespaces × E × C times.
func createBindings(ctx context.Context, c client.Client, p params) error {
	return parallel(p.n, func(i int) error {
		ns, env, conn := i%p.namespaces, (i/p.namespaces)%p.e, (i/(p.namespaces*p.e))%p.c
		b := &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: benchNamespace(ns), Name: fmt.Sprintf("b-%d", i)},
			Spec: kf.SecretBindingSpec{ConnectionRef: kf.ConnectionReference{Name: fmt.Sprintf("conn-%d", conn)},
				Vault: "bench/app", Environment: fmt.Sprintf("env-%d", env),
				RefreshInterval: &metav1.Duration{Duration: p.interval}}}
		if p.templates {
			b.Spec.Target.Type = corev1.SecretTypeDockerConfigJson
			b.Spec.Target.Template = &kf.TargetTemplate{Data: benchTemplates}
		}
		return c.Create(ctx, b)
	})
}

// readyWatch follows every binding's Ready condition through one watch (a LIST per poll
// of 10,000 bindings would itself load this small machine).
type readyWatch struct {
	c     client.WithWatch
	ctx   context.Context
	ready map[string]bool
	w     watch.Interface
}

func watchReady(ctx context.Context, c client.WithWatch) (*readyWatch, error) {
	r := &readyWatch{c: c, ctx: ctx, ready: map[string]bool{}}
	return r, r.relist()
}

func (r *readyWatch) relist() error {
	list := &kf.SecretBindingList{}
	if err := r.c.List(r.ctx, list); err != nil {
		return err
	}
	clear(r.ready)
	for i := range list.Items {
		r.observe(&list.Items[i])
	}
	w, err := r.c.Watch(r.ctx, &kf.SecretBindingList{}, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
	r.w = w
	return err
}

func (r *readyWatch) observe(b *kf.SecretBinding) {
	k := b.Namespace + "/" + b.Name
	delete(r.ready, k)
	if c := meta.FindStatusCondition(b.Status.Conditions, kf.ConditionReady); c != nil && c.Status == metav1.ConditionTrue {
		r.ready[k] = true
	}
}

func (r *readyWatch) Stop() {
	if r.w != nil {
		r.w.Stop()
	}
}

func (r *readyWatch) wait(n int, timeout time.Duration) error {
	deadline := time.After(timeout)
	for len(r.ready) < n {
		select {
		case <-deadline:
			return fmt.Errorf("%d of %d bindings Ready after %v", len(r.ready), n, timeout)
		case e, ok := <-r.w.ResultChan():
			if !ok || e.Type == watch.Error {
				r.w.Stop()
				if err := r.relist(); err != nil {
					return err
				}
				continue
			}
			if b, ok := e.Object.(*kf.SecretBinding); ok && e.Type != watch.Deleted {
				r.observe(b)
			}
			if os.Getenv("BENCH_VERBOSE") != "" && len(r.ready)%max(n/20, 1) == 0 {
				fmt.Fprintf(os.Stderr, "%s ready %d/%d\n", time.Now().Format("15:04:05.000"), len(r.ready), n)
			}
		}
	}
	return nil
}

func resourceVersions(ctx context.Context, c client.Client) (map[string]string, error) {
	out := map[string]string{}
	bl := &kf.SecretBindingList{}
	if err := c.List(ctx, bl); err != nil {
		return nil, err
	}
	for _, b := range bl.Items {
		out["sb/"+b.Namespace+"/"+b.Name] = b.ResourceVersion
	}
	sl := &corev1.SecretList{}
	if err := c.List(ctx, sl, client.HasLabels{kf.LabelBinding}); err != nil {
		return nil, err
	}
	for _, s := range sl.Items {
		out["secret/"+s.Namespace+"/"+s.Name] = s.ResourceVersion
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
