// Command manager runs the keyferry operator.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers"
	"github.com/keyferry/keyferry/internal/hmackey"
	"github.com/keyferry/keyferry/internal/metrics"
	"github.com/keyferry/keyferry/internal/metricsauth"
	"github.com/keyferry/keyferry/internal/shard"
	"github.com/keyferry/keyferry/internal/vault"
	"github.com/keyferry/keyferry/internal/version"
)

type options struct {
	metricsAddr, probeAddr, namespace string
	pprofAddr                         string
	leaderElect                       bool
	qps                               float64
	burst                             int
	connectionWorkers, bindingWorkers int
	credentialsPoll                   time.Duration
	egressDeny                        string
	shard                             shard.Shard
	metricsSecure                     bool
	restartDebounce                   time.Duration
	minRotationInterval               time.Duration
	webhookAddr, webhookCertDir       string
	webhookAllowHTTP                  bool
}

func main() {
	var o options
	defaultNS := os.Getenv("POD_NAMESPACE")
	if defaultNS == "" {
		defaultNS = "keyferry-system"
	}
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "Address the Prometheus metrics endpoint binds to; 0 disables it.")
	flag.BoolVar(&o.metricsSecure, "metrics-secure", false, "Serve metrics over HTTPS, only to clients the API server authenticates and authorizes for GET /metrics (the cluster manifests set it; plain HTTP is for a local run).")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	flag.StringVar(&o.pprofAddr, "pprof-bind-address", "0", "Address of the Go pprof endpoint (profiling); 0 disables it.")
	flag.StringVar(&o.namespace, "namespace", defaultNS, "The operator's own namespace (holds the HMAC key Secret and the leader-election lease).")
	flag.BoolVar(&o.leaderElect, "leader-elect", false, "Elect a leader so only one of several replicas reconciles.")
	flag.IntVar(&o.shard.Count, "shard-count", 1, "Number of shards: with more than one, each replica set handles only the namespaces whose hash falls in its --shard-index, with a leader-election lease of its own.")
	flag.IntVar(&o.shard.Index, "shard-index", 0, "This replica's shard, in [0, --shard-count).")
	flag.Float64Var(&o.qps, "kube-api-qps", 500, "Queries per second to the Kubernetes API server (each new binding costs two writes; lower it on a busy shared cluster).")
	flag.IntVar(&o.burst, "kube-api-burst", 1000, "Burst of queries to the Kubernetes API server.")
	flag.IntVar(&o.connectionWorkers, "connection-workers", 2, "Concurrent reconciles per connection controller.")
	flag.IntVar(&o.bindingWorkers, "binding-workers", 16, "Concurrent SecretBinding reconciles.")
	flag.DurationVar(&o.credentialsPoll, "credentials-poll-interval", 10*time.Second, "How often connections look at their credentials and session again (a backstop: changes to Secrets labelled keyferry.dev/credentials=true are watched and take effect at once).")
	flag.DurationVar(&o.minRotationInterval, "min-rotation-interval", time.Hour, "The shortest auth rotation.every honoured (a shorter one rotates at this interval). Lower it for tests only: every rotation costs the provider a key.")
	flag.DurationVar(&o.restartDebounce, "restart-debounce", 5*time.Second, "Changes of the Secrets one workload consumes within this window cause one restart.")
	flag.StringVar(&o.egressDeny, "egress-deny-cidrs", vault.DefaultEgressDeny, "Comma-separated CIDRs no provider request may reach (checked on the resolved address, redirects included); empty allows every address. The default denies link-local, loopback, 0.0.0.0/8 and cloud metadata addresses.")
	zapOpts := zap.Options{}
	flag.StringVar(&o.webhookAddr, "webhook-bind-address", ":9443", "Address the RefreshReceiver hook listener binds to (every replica serves it).")
	flag.StringVar(&o.webhookCertDir, "webhook-cert-dir", "", "Directory holding tls.crt and tls.key for the hook listener (a mounted Secret, e.g. cert-manager's; reloaded when they change). Without it (and without --webhook-allow-http) the listener is off.")
	flag.BoolVar(&o.webhookAllowHTTP, "webhook-allow-http", false, "Serve the hook listener over plain HTTP when no --webhook-cert-dir is given: for local development or behind an ingress that terminates TLS.")
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	if err := run(o); err != nil {
		ctrl.Log.WithName("setup").Error(err, "manager stopped")
		os.Exit(1)
	}
}

func run(o options) error {
	egressDeny, err := vault.ParseCIDRs(o.egressDeny)
	if err != nil {
		return fmt.Errorf("--egress-deny-cidrs: %w", err)
	}
	if err := o.shard.Validate(); err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(kf.AddToScheme(scheme))

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst
	// The user agent names the default field manager of keyferry's status and metadata
	// writes: with shards, "keyferry-shard-1-of-2", so managedFields and audit logs show
	// which shard wrote. (Secret data keeps the field manager "keyferry": a namespace moving
	// between shards must not meet an apply conflict with itself.)
	cfg.UserAgent = version.UserAgent(o.shard.Name())

	// The cache needs the key: it keeps keyed digests of managed Secrets, not their values.
	direct, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	keyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	key, err := hmackey.Ensure(keyCtx, direct, o.namespace)
	cancel()
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsOptions(o),
		HealthProbeBindAddress:  o.probeAddr,
		PprofBindAddress:        o.pprofAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        leaseName(o.shard),
		LeaderElectionNamespace: o.namespace,
		// A stopping leader hands over at once (a rolling update does not wait a lease).
		LeaderElectionReleaseOnCancel: true,
		Cache:                         controllers.CacheOptions(key, o.shard),
		Client:                        controllers.ClientOptions(),
	})
	if err != nil {
		return err
	}
	if err := controllers.SetupWithManager(mgr, controllers.Options{
		Registry:                vault.NewRegistry(metrics.ClientHooks, egressDeny),
		HMACKey:                 key,
		CredentialsPollInterval: o.credentialsPoll,
		ConnectionWorkers:       o.connectionWorkers,
		BindingWorkers:          o.bindingWorkers,
		RestartDebounce:         o.restartDebounce,
		MinRotationInterval:     o.minRotationInterval,
		Shard:                   o.shard,
		Webhook:                 controllers.WebhookOptions{Addr: o.webhookAddr, CertDir: o.webhookCertDir, AllowHTTP: o.webhookAllowHTTP},
	}); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	ctrl.Log.WithName("setup").Info("starting manager", "version", version.Version, "namespace", o.namespace, "shard", o.shard.Name())
	return mgr.Start(ctx)
}

// leaseName is the leader-election lease: one per shard, so each shard has its leader.
func leaseName(s shard.Shard) string {
	if !s.Sharded() {
		return "keyferry.keyferry.dev"
	}
	return "keyferry-" + s.Name() + ".keyferry.dev"
}

// metricsOptions serves metrics as kubebuilder does: with --metrics-secure, HTTPS (a
// self-signed certificate unless one is mounted) and every request authenticated and
// authorized through the API server (TokenReview, SubjectAccessReview).
func metricsOptions(o options) metricsserver.Options {
	m := metricsserver.Options{BindAddress: o.metricsAddr}
	if o.metricsSecure {
		m.SecureServing = true
		m.FilterProvider = metricsauth.FilterProvider
	}
	return m
}
