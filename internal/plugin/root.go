// Package plugin is kubectl-keyferry, the kubectl plugin that shows and steers many
// keyferry objects at once: status (a tree from connections to the workloads that read
// their Secrets), why (one binding's story and what to do), refresh (with --wait), suspend
// and resume. It uses kubectl's own flags (cli-runtime) and reads nothing a user's
// kubeconfig may not read.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// Options is what every command shares: kubectl's flags, the streams, and (tests) a
// clock and a REST config of their own.
type Options struct {
	Flags   *genericclioptions.ConfigFlags
	Streams genericiooptions.IOStreams
	// Now is the clock ages are computed from; time.Now when nil.
	Now func() time.Time
	// RESTConfig replaces the kubeconfig's (tests).
	RESTConfig *rest.Config
	// Color forces colour on or off; nil decides by whether stdout is a terminal (and
	// NO_COLOR).
	Color *bool
}

// NewCommand returns the kubectl-keyferry command.
func NewCommand(o *Options) *cobra.Command {
	if o.Flags == nil {
		o.Flags = genericclioptions.NewConfigFlags(true)
	}
	cmd := &cobra.Command{
		Use:   "kubectl-keyferry",
		Short: "See and steer keyferry's connections, bindings and pushes",
		Long: `kubectl keyferry shows which keyferry objects fail and why, what reads their Secrets,
and refreshes, suspends or resumes many of them at once.`,
		Example: `  kubectl keyferry status -A
  kubectl keyferry why payments -n shop
  kubectl keyferry refresh --connection keyway -n shop --wait
  kubectl keyferry suspend sb payments -n shop
  kubectl keyferry hook https://hooks.example.com/hook/... --secret-file ./secret
  kubectl keyferry check-upgrade -A`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	o.Flags.AddFlags(cmd.PersistentFlags())
	cmd.AddCommand(newStatusCommand(o), newWhyCommand(o), newRefreshCommand(o),
		newSuspendCommand(o, true), newSuspendCommand(o, false), newHookCommand(o), newCheckUpgradeCommand(o))
	return cmd
}

// Main runs the command and returns the process exit code.
func Main(o *Options, args []string) int {
	cmd := NewCommand(o)
	cmd.SetArgs(args)
	cmd.SetOut(o.Streams.Out)
	cmd.SetErr(o.Streams.ErrOut)
	if err := cmd.Execute(); err != nil {
		var exit exitError
		if errors.As(err, &exit) {
			if exit.msg != "" {
				fmt.Fprintln(o.Streams.ErrOut, exit.msg)
			}
			return exit.code
		}
		fmt.Fprintln(o.Streams.ErrOut, "error:", err)
		return 1
	}
	return 0
}

// exitError ends the command with a code (and a message, when there is one).
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// client is a client for keyferry's kinds and the core ones, from the kubeconfig.
func (o *Options) client() (client.WithWatch, error) {
	cfg := o.RESTConfig
	if cfg == nil {
		var err error
		if cfg, err = o.Flags.ToRESTConfig(); err != nil {
			return nil, err
		}
	}
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(kf.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s)) // check-upgrade reads keyferry's CRDs
	return client.NewWithWatch(cfg, client.Options{Scheme: s})
}

// namespace is the -n flag, else the kubeconfig context's namespace, else "default".
func (o *Options) namespace() (string, error) {
	if o.Flags.Namespace != nil && *o.Flags.Namespace != "" {
		return *o.Flags.Namespace, nil
	}
	if o.RESTConfig != nil {
		return "default", nil
	}
	ns, _, err := o.Flags.ToRawKubeConfigLoader().Namespace()
	return ns, err
}

// color says whether to write ANSI colour: on a terminal, unless NO_COLOR is set.
func (o *Options) color() bool {
	if o.Color != nil {
		return *o.Color
	}
	if os.Getenv("NO_COLOR") != "" {
		return false
	}
	f, ok := o.Streams.Out.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

func ctxOf(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
