package vault

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// DefaultEgressDeny is the egress policy's default deny list: link-local (where cloud
// metadata services live), loopback, "this network", and the well-known metadata
// addresses that are not link-local (Alibaba's, AWS's IPv6 one).
const DefaultEgressDeny = "169.254.0.0/16,fe80::/10,127.0.0.0/8,::1/128,0.0.0.0/8,100.100.100.200/32,fd00:ec2::254/128"

// ParseCIDRs reads a comma-separated CIDR list; a bare address counts as a single-address
// prefix. An empty string is an empty list (no policy).
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q is neither a CIDR nor an address", f)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR: %w", f, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// EgressDeniedError is a connection the egress policy refused.
type EgressDeniedError struct {
	Addr netip.Addr
}

func (e *EgressDeniedError) Error() string {
	return fmt.Sprintf("address %s is refused by the operator's egress policy (--egress-deny-cidrs)", e.Addr)
}

// egressDialer dials like the default transport but refuses denied addresses. The check
// runs on the address actually dialled, after DNS resolution, so it holds for every
// redirect and against DNS rebinding.
func egressDialer(deny []netip.Prefix) *net.Dialer {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	if len(deny) == 0 {
		return d
	}
	d.Control = func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("egress policy: cannot read address %q", address)
		}
		addr := ap.Addr().Unmap()
		for _, p := range deny {
			if p.Contains(addr) {
				return &EgressDeniedError{Addr: addr}
			}
		}
		return nil
	}
	return d
}
