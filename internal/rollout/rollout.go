// Package rollout works out which keys of which Secrets a workload's pod template
// consumes, and the keyed digest of exactly that data: a workload is restarted when, and
// only when, the digest changes.
package rollout

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/keyferry/keyferry/internal/render"
)

// Keys is what a workload reads of one Secret: All, or the named keys.
type Keys struct {
	All   bool
	Names map[string]bool
}

func (k *Keys) add(name string) {
	if k.Names == nil {
		k.Names = map[string]bool{}
	}
	k.Names[name] = true
}

// Consumed maps each Secret a pod template reads (by name, in its namespace) to the keys it
// reads: envFrom (all keys), env valueFrom.secretKeyRef (that key), secret volumes and
// projected secret sources (their items, or all keys), in init containers too. Optional
// references count: when the Secret appears, the workload should see it.
func Consumed(spec *corev1.PodSpec) map[string]*Keys {
	out := map[string]*Keys{}
	get := func(name string) *Keys {
		k, ok := out[name]
		if !ok {
			k = &Keys{}
			out[name] = k
		}
		return k
	}
	containers := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	for _, c := range containers {
		for _, ef := range c.EnvFrom {
			if ef.SecretRef != nil && ef.SecretRef.Name != "" {
				get(ef.SecretRef.Name).All = true
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name != "" {
				get(e.ValueFrom.SecretKeyRef.Name).add(e.ValueFrom.SecretKeyRef.Key)
			}
		}
	}
	volume := func(name string, items []corev1.KeyToPath) {
		if name == "" {
			return
		}
		k := get(name)
		if len(items) == 0 {
			k.All = true
		}
		for _, it := range items {
			k.add(it.Key)
		}
	}
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			volume(v.Secret.SecretName, v.Secret.Items)
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.Secret != nil {
					volume(src.Secret.Name, src.Secret.Items)
				}
			}
		}
	}
	return out
}

// Digest is a keyed HMAC of exactly the consumed data of the given Secrets (by name):
// equal digests mean the workload reads the same bytes. It is render.Digest over the
// consumed entries, each named "<secret>/<key>"; the manager feeds it the cache's per-key
// digests (render.KeyDigest), never the values, which it does not hold.
func Digest(key []byte, consumed map[string]*Keys, data map[string]map[string][]byte) string {
	flat := map[string][]byte{}
	for name, k := range consumed {
		d, ok := data[name]
		if !ok {
			continue
		}
		for dk, v := range d {
			if k.All || k.Names[dk] {
				flat[name+"/"+dk] = v
			}
		}
	}
	return render.Digest(key, "rollout", flat)
}
