package main

import (
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

func httpGet(url string) ([]byte, error) {
	resp, err := http.Get(url) //nolint:noctx // a local poll
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	return io.ReadAll(resp.Body)
}

// sampler follows a process's peak and current RSS (VmHWM, VmRSS, KiB) and CPU seconds
// from /proc.
type sampler struct {
	pid  int
	done chan struct{}
	once sync.Once
	mu   sync.Mutex
	peak int64
	rss  int64
	// anon and file split rss: the heap and stacks, and the binary's mapped pages.
	anon, file int64
	cpu        float64
}

func newSampler(pid int) *sampler {
	s := &sampler{pid: pid, done: make(chan struct{})}
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			s.sample()
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) sample() {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(s.pid) + "/status")
	if err != nil {
		return
	}
	kib := map[string]int64{}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			kib[f[0]], _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(s.pid) + "/stat")
	if err != nil {
		return
	}
	// Fields after the command name: utime and stime are the 14th and 15th fields.
	rest := string(stat)[strings.LastIndexByte(string(stat), ')')+2:]
	f := strings.Fields(rest)
	var cpu float64
	if len(f) > 12 {
		ut, _ := strconv.ParseFloat(f[11], 64)
		stt, _ := strconv.ParseFloat(f[12], 64)
		cpu = (ut + stt) / 100 // USER_HZ
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peak = max(s.peak, kib["VmHWM:"])
	s.rss, s.anon, s.file = kib["VmRSS:"], kib["RssAnon:"], kib["RssFile:"]
	s.cpu = max(s.cpu, cpu)
}

// now samples once more and returns current RSS (KiB) and CPU seconds so far.
func (s *sampler) now() (rssKiB int64, cpuSeconds float64) {
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rss, s.cpu
}

// split returns the last sample's anonymous and file-backed resident KiB.
func (s *sampler) split() (anonKiB, fileKiB int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.anon, s.file
}

func (s *sampler) stop() (peakKiB int64) {
	s.once.Do(func() { s.sample(); close(s.done) })
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}
