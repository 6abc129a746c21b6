package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/pprof/profile"
)

// cpuProfiler takes the manager's CPU profile from its start until all bindings are
// Ready: back-to-back one-second profiles from its pprof endpoint, merged (an endpoint
// profile has a fixed length, and the time to Ready is what is measured).
type cpuProfiler struct {
	addr  string
	parts []*profile.Profile
	stop  context.CancelFunc
	done  chan error
}

// profileAddr picks a loopback address for the manager's --pprof-bind-address.
func profileAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}

func startCPUProfile(addr string) *cpuProfiler {
	ctx, cancel := context.WithCancel(context.Background())
	p := &cpuProfiler{addr: addr, stop: cancel, done: make(chan error, 1)}
	go func() { p.done <- p.loop(ctx) }()
	return p
}

func (p *cpuProfiler) loop(ctx context.Context) error {
	c := &http.Client{Timeout: 10 * time.Second}
	for ctx.Err() == nil {
		resp, err := c.Get("http://" + p.addr + "/debug/pprof/profile?seconds=1")
		if err != nil {
			time.Sleep(20 * time.Millisecond) // the manager is starting
			continue
		}
		prof, err := profile.Parse(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return fmt.Errorf("a CPU profile from %s: %w", p.addr, err)
		}
		p.parts = append(p.parts, prof)
	}
	return nil
}

// finish ends the profile (after the part under way) and writes the merge to path.
func (p *cpuProfiler) finish(path string) error {
	p.stop()
	if err := <-p.done; err != nil {
		return err
	}
	if len(p.parts) == 0 {
		return fmt.Errorf("no CPU profile from %s", p.addr)
	}
	merged, err := profile.Merge(p.parts)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := merged.Write(f); err != nil {
		_ = f.Close()
		return err
	}
	fmt.Fprintf(os.Stderr, "CPU profile of shard 0 from start to all Ready (%d s): %s\n", len(p.parts), path)
	return f.Close()
}
