// Command testapp is the workload of keyferry's tests on a real node: it prints the
// environment variables and files it is told to, once at start, and serves them on HTTP
// (files read again on every request, so a Secret volume's update shows without a
// restart). A development tool: the values it shows are test data.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	envs := flag.String("env", "", "comma-separated environment variables to show")
	files := flag.String("file", "", "comma-separated files to show")
	listen := flag.String("listen", ":8080", "address to serve them on")
	flag.Parse()
	show := func() string {
		var b strings.Builder
		for _, name := range split(*envs) {
			fmt.Fprintf(&b, "env %s=%s\n", name, os.Getenv(name))
		}
		for _, path := range split(*files) {
			data, err := os.ReadFile(path)
			if err != nil {
				fmt.Fprintf(&b, "file %s: %v\n", path, err)
				continue
			}
			fmt.Fprintf(&b, "file %s=%s\n", path, data)
		}
		return b.String()
	}
	fmt.Print(show())
	srv := &http.Server{Addr: *listen, ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprint(w, show()) })}
	log.Fatal(srv.ListenAndServe())
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
