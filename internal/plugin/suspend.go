package plugin

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// kinds are the names kubectl users type for keyferry's kinds.
var kinds = map[string]func() client.Object{
	"secretbinding":          func() client.Object { return &kf.SecretBinding{} },
	"vaultconnection":        func() client.Object { return &kf.VaultConnection{} },
	"clustervaultconnection": func() client.Object { return &kf.ClusterVaultConnection{} },
	"clustersecretbinding":   func() client.Object { return &kf.ClusterSecretBinding{} },
	"secretpush":             func() client.Object { return &kf.SecretPush{} },
}

var shortNames = map[string]string{"sb": "secretbinding", "vc": "vaultconnection", "cvc": "clustervaultconnection",
	"csb": "clustersecretbinding", "sp": "secretpush"}

func kindNamed(s string) (string, error) {
	s = strings.ToLower(strings.TrimSuffix(strings.TrimSuffix(strings.ToLower(s), ".keyferry.dev"), "s"))
	if long, ok := shortNames[s]; ok {
		s = long
	}
	if _, ok := kinds[s]; !ok {
		return "", fmt.Errorf("unknown kind %q: one of sb, vc, cvc, csb, sp (or their full names)", s)
	}
	return s, nil
}

func newSuspendCommand(o *Options, suspend bool) *cobra.Command {
	verb, done, what := "suspend", "suspended", "Stop keyferry from touching an object (spec.suspend: true)"
	if !suspend {
		verb, done, what = "resume", "resumed", "Let keyferry handle a suspended object again (spec.suspend: false); it syncs at once"
	}
	return &cobra.Command{
		Use:       verb + " KIND NAME",
		Short:     what,
		Example:   fmt.Sprintf("  kubectl keyferry %[1]s sb payments -n shop\n  kubectl keyferry %[1]s cvc shared", verb),
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"sb", "vc", "cvc", "csb", "sp"},
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := kindNamed(args[0])
			if err != nil {
				return err
			}
			ns := ""
			if !strings.HasPrefix(kind, "cluster") {
				if ns, err = o.namespace(); err != nil {
					return err
				}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			obj := kinds[kind]()
			obj.SetNamespace(ns)
			obj.SetName(args[1])
			patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"suspend": suspend}})
			if err := c.Patch(ctxOf(cmd), obj, client.RawPatch(types.MergePatchType, patch)); err != nil {
				return err
			}
			name := args[1]
			if ns != "" {
				name = ns + "/" + name
			}
			fmt.Fprintf(o.Streams.Out, "%s %s %s\n", kind, name, done)
			return nil
		},
	}
}
